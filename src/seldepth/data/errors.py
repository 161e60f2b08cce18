"""The one error type of the data readers."""


class DatasetError(ValueError):
    """A data file or layout that cannot be read: the message names the file (and row, key) at fault."""
