"""Errors raised for problems in the user's inputs."""


class InputError(ValueError):
    """A problem in a user's input file or configuration.

    The message is one sentence that names the file, the row or column, and the fix,
    so that it can be shown to the user as it is.
    """
