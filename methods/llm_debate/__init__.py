"""LLM debate (Du et al., 2023): agents answer, read each other's answers, and update over rounds."""
