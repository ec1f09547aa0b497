"""The one exception type the command line turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input or environment the user can fix; the message is one line naming the problem."""


class CheckpointError(UserError):
    """A run's checkpoint is unreadable, truncated or not what the twin saved (never unpickled as code)."""


def one_line(error: BaseException) -> str:
    """An error as one line: its message's last line (a remote task's error carries its traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]
