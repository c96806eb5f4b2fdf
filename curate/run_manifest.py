"""A run's manifest.json: its status, recipe, versions and per-step counts, and the final
accounting, which fails loudly unless every input row and every record a stage added ended
rejected, pending or kept.
"""

from __future__ import annotations

import platform
from pathlib import Path

import curate
from curate.console import Console
from curate.errors import CurateError
from curate.pluginmanager import PluginHost
from curate.recipe import Recipe
from curate.runstore import RUN_FORMAT, RunFolder, count_rows, read_json, write_json_atomic
from curate.step_execution import RunState


class RunManifest:
    def __init__(self, recipe: Recipe, host: PluginHost, folder: RunFolder, console: Console,
                 state: RunState):
        self.recipe, self.host, self.folder, self.console = recipe, host, folder, console
        self.state = state

    def write(self, status: str, **extra: object) -> dict:
        manifest = {
            "run_format": RUN_FORMAT,
            "status": status,
            "recipe": {"file": str(self.recipe.file), "path": str(self.recipe.file.resolve()),
                       "name": self.recipe.name, "sha256": self.recipe.digest},
            "seed": self.recipe.run.seed,
            "versions": self._versions(),
            "sources": self.state.sources,
            "steps": self.state.steps,
            **extra,
        }
        if status == "complete":
            manifest["final"] = self._final_counts(manifest)
        write_json_atomic(self.folder.manifest_file, manifest)
        if status != "running":
            self.console.detail(f"manifest: {self.folder.manifest_file} ({status})")
        return manifest

    def review_counts(self, final: Path, pending: int) -> dict:
        """The counts of a run that stopped because records wait for review."""
        kept = count_rows(final)
        rows, rejected, accounted = self._accounted(kept, pending)
        waiting = {step["name"]: step["pending"] for step in self.state.steps
                   if step.get("pending")}
        return {"input": rows, "added": self._added(), "rejected": rejected, "pending": pending,
                "kept": kept, "accounted": accounted, "steps": waiting}

    def _final_counts(self, manifest: dict) -> dict:
        split = manifest["split"]
        general = split.get("general_eval", 0)
        rows, rejected, accounted = self._accounted(split["train"] + split["eval"] + general,
                                                    pending=0)
        final = {"input": rows, "added": self._added(), "rejected": rejected,
                 "train": split["train"], "eval": split["eval"], "accounted": accounted}
        if "general_eval" in split:
            final["general_eval"] = general
        return final

    def _accounted(self, kept: int, pending: int) -> tuple[int, int, int]:
        """(input rows, rejected, accounted): every row, and every record a stage added, must
        be rejected, pending or kept."""
        rows = self.state.steps[0]["in"] if self.state.steps else 0
        rejected = sum(step["rejected"] for step in self.state.steps)
        accounted = rejected + pending + kept
        if accounted != rows + self._added():
            raise RuntimeError(f"{rows} input rows and {self._added()} added records but"
                               f" {accounted} accounted for: records were lost or duplicated"
                               f" between steps")
        return rows, rejected, accounted

    def _added(self) -> int:
        return sum(step.get("added", 0) for step in self.state.steps)

    def _versions(self) -> dict:
        import pyarrow

        plugins = {name: info.version or curate.__version__
                   for name, info in sorted(self.host.plugins.items())}
        return {"curate": curate.__version__, "python": platform.python_version(),
                "pyarrow": pyarrow.__version__, "plugins": plugins}


def check_default_folder_is_free(folder: RunFolder, recipe: Recipe) -> None:
    """The default folder, runs/<recipe stem>, is the same for every recipe of one file name:
    one must not overwrite the run of another that still exists."""
    if not folder.manifest_file.exists():
        return
    owner = read_json(folder.manifest_file).get("recipe", {})
    previous = owner.get("path")
    # A copied project (same recipe text, another folder) may go on with its copied run.
    if owner.get("sha256") == recipe.digest:
        return
    if previous and previous != str(recipe.file.resolve()) and Path(previous).is_file():
        raise CurateError(
            f"{folder.path} holds the run of {previous}, another recipe of the same file name:"
            f" pass --run-dir, or set [run] dir in {recipe.file}")
