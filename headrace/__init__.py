"""headrace: command-line tools, the embedded local runtime and the experiment suite."""

__version__ = "0.1.0"
