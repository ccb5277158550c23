"""Chain-of-thought: a single agent answers in one call (the single-agent baseline)."""
