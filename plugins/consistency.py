"""The built-in `consistency` plugin (being written)."""
