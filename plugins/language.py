"""The built-in `language` plugin (being written)."""
