"""Dataset registry and loaders, the canonical sample, and crash-safe JSONL records."""
