"""Answer extraction and grading, metrics, the eval CLIs and the report."""
