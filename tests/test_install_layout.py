"""plugins/, train/ and evals/ install inside the curate namespace, never as top-level names.

A wheel is built from the checkout and installed, non-editable, into a temporary folder that
goes first on the path of a fresh interpreter.
"""

import shutil
import subprocess
import sys
import zipfile

import pytest

REPO_PACKAGES = ("curate.plugins", "curate.plugins.sources", "curate.train", "curate.evals",
                 "curate.cli")


@pytest.fixture(scope="module")
def wheel(repo, tmp_path_factory):
    # Built from a copy: setuptools leaves build/ behind in the tree it builds.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    for name in ("curate", "plugins", "train", "evals"):
        shutil.copytree(repo / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(source)], check=True)
    return next(out.glob("curate-*.whl"))


def test_the_wheel_has_no_generic_top_level_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("curate-")}
    assert top_level == {"curate"}
    assert "curate/plugins/length.py" in names
    assert "curate/train/__init__.py" in names and "curate/evals/__init__.py" in names
    assert "curate/plugins/templates/mistral_v3.jinja" in names  # package data travels too


@pytest.mark.slow
def test_a_non_editable_install_imports_the_namespaced_packages(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True)
    probe = (
        "import importlib, importlib.util, curate\n"
        f"for name in {REPO_PACKAGES!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), module.__file__\n"
        "for name in ('plugins', 'train', 'evals'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "from curate.pluginmanager import build_host\n"
        "assert not build_host().failed\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin",
                                            "CURATE_LOAD_PLUGINS": ""})
    assert result.stdout.strip() == "ok", result.stderr


def test_every_package_folder_is_listed_in_pyproject(repo):
    import tomllib

    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    mapping = {"curate": "curate", "plugins": "curate.plugins", "train": "curate.train",
               "evals": "curate.evals"}
    found = set()
    for top, package in mapping.items():
        for init in (repo / top).rglob("__init__.py"):
            parts = init.parent.relative_to(repo / top).parts
            found.add(".".join((package, *parts)))
    assert found == listed
