"""The built-in `report` plugin (being written)."""
