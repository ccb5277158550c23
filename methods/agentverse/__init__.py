"""AgentVerse: expert recruiting, solver and critics with [Agree] consensus, evaluator loop."""
