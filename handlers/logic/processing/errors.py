"""Errors of the processing core."""


class UnprocessableFile(Exception):
    """The file itself cannot be processed; retrying will not change that.

    The message is shown to users as is (CLI error line, metadata ``error``), so it must
    say what is wrong and, where it applies, where in the file.
    """
