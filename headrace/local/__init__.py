"""The embedded local runtime: what runs the pipeline on a developer's machine."""
