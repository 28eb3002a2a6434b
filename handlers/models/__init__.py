"""pydantic models: settings (environment), events, table definitions."""
