"""Pure logic: no AWS calls, no environment reads."""
