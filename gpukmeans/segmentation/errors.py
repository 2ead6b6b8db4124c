"""The one exception type for problems a user can cause with their data or arguments."""


class InputError(ValueError):
    """A problem with the user's input, worded to be shown as a single line.

    The command line prints the message and exits with code 2; Python callers can
    catch it as a plain :class:`ValueError`.
    """
