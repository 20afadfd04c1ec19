class BbansError(Exception):
    """A failure the user gets as one line: bad input, corrupt file, missing model or data."""
