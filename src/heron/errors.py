"""The one error type users see.

Every bad input (unknown algorithm or env, bad override, unusable action space, missing or
torn run directory, ...) raises `HeronError` with a message that names the problem and the
fix. The CLI prints it as one line and exits with status 2; nothing else is caught there, so
a real bug still shows its traceback.
"""


class HeronError(Exception):
    """A user-facing error: `str(err)` is one line naming the problem and the fix."""
