"""The one exception type for mistakes a user can fix. The CLI prints its message on one line, no traceback."""


class UserError(Exception):
    """A problem with the user's input (a name, a file, a field), worded so that the message alone says what to fix."""


def first_line(e: Exception) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for a one-line error."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class NotLearning(UserError):
    """A step trained tokens, yet no trainable parameter received a gradient: the adapter would silently stay put."""
