"""DyLAN: a dynamic agent network with listwise pruning, early consensus and agent importance scores."""
