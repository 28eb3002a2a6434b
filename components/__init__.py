"""The Pulumi components of headrace and the typed stack configuration (see __main__.py)."""
