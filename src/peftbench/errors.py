"""The one exception type a user sees as a message instead of a traceback."""


class PeftbenchError(Exception):
    """A user-facing error: the message names the problem and the fix."""
