"""Errors of the processing core."""


class UnprocessableFile(Exception):
    """The file itself cannot be processed; retrying will not change that.

    The message is shown to users as is (CLI error line, metadata ``error``), so it must
    say what is wrong and, where it applies, where in the file.
    """


class OutOfTime(Exception):
    """Processing reached its deadline and was stopped. Not the file's fault: a retry with
    more time (a longer function timeout, more memory and so CPU) can succeed."""


class OutOfMemory(Exception):
    """Processing needed more memory than DuckDB's limit allows. Not the file's fault: a
    retry with a higher limit (more function memory) can succeed."""


class OutOfScratchSpace(Exception):
    """Processing needed more scratch disk than there is (the file, its decompressed or
    transcoded copy, DuckDB's spill files, the Parquet). Not the file's fault: a retry with
    more space (a larger ephemeral storage) can succeed."""
