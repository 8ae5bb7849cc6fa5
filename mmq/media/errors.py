class MediaError(ValueError):
    """An input that cannot be used; the message is shown to the user on the failed item."""
