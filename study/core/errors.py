"""The one exception type the command line turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input or environment the user can fix; the message is one line naming the problem."""


class CheckpointError(UserError):
    """A run's checkpoint is unreadable, truncated or not what the twin saved (never unpickled as code)."""
