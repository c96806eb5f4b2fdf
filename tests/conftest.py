"""The core suite never depends on whatever third-party plugins happen to be installed: only
built-ins load, here and in every subprocess the tests start."""

import os
from pathlib import Path

import pytest

os.environ["CURATE_LOAD_PLUGINS"] = ""
os.environ.pop("CURATE_DISABLE_PLUGINS", None)
os.environ.pop("CURATE_TRACEBACK", None)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
