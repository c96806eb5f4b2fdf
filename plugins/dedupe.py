"""The built-in `dedupe` plugin (being written)."""
