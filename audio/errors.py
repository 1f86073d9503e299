"""One error type for every way audio input can be wrong, so callers catch one thing."""


class AudioError(ValueError):
    """Input audio cannot be used; the message says which file and why."""
