"""Self-consistency: several independent chain-of-thought samples, majority vote (optionally an LLM aggregator)."""
