"""The exception types for problems a user can cause with their data, arguments or disk."""


class InputError(ValueError):
    """A problem with the user's input, worded to be shown as a single line.

    The command line prints the message and exits with code 2; Python callers can
    catch it as a plain :class:`ValueError`.
    """


class OutputError(OSError):
    """Results could not be written where asked: a read-only place, a full disk, an I/O error.

    Worded, like :class:`InputError`, to be shown as a single line naming the path; the
    command line prints it and exits with code 2. Python callers can catch it as the
    :class:`OSError` it is, with the ``errno`` of the failure that caused it.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(errno, message)

    def __str__(self) -> str:
        return self.strerror
