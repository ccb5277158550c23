"""The error type for unusable input data (one line naming file, line and field)."""


class DataError(ValueError):
    """Input data that cannot be used as given; the message is one line naming file, line and field."""
