"""Helpers shared by the tests, imported as `support.x`: pyproject.toml puts tests/ on pytest's
`pythonpath`. A regular package, so that a `support` installed elsewhere cannot shadow it; it is
never installed with curate."""
