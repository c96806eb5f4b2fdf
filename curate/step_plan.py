"""The curation steps of a run, planned before anything runs: each step's folder and the
fingerprint of what it depends on (its options, its plugin's version, the fingerprint of its
input, the data its sources hold), so a rerun with nothing changed runs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import curate
from curate.errors import CurateError
from curate.ingest import READ_RULES, READ_STEP
from curate.options import options_to_dict
from curate.pluginmanager import PluginHost
from curate.recipe import PluginSpec, Recipe
from curate.records import RECORD_ID_SCHEME
from curate.runstore import RUN_FORMAT, RunFolder, fingerprint
from curate.sources import SourceContext, file_errors
from curate.template_step import TOKENIZER_FILES, template_steps, tokenizer_digests
from curate.tokenizer import tokenizer_location

COUNTING_FILES = ("tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
"""Files a slow tokenizer counts with, beyond those the chat-template step digests."""


@dataclass
class PlannedStep:
    index: int
    name: str
    use: str
    folder: Path
    fingerprint: str
    spec: PluginSpec | None = None


class StepPlanner:
    def __init__(self, recipe: Recipe, host: PluginHost, folder: RunFolder):
        self.recipe, self.host, self.folder = recipe, host, folder

    def plan(self) -> list[PlannedStep]:
        """Every curation step with its folder and fingerprint, computed before anything runs."""
        read = PlannedStep(0, READ_STEP, READ_STEP, self.folder.step_dir(0, READ_STEP),
                           self._read_fingerprint())
        steps = [read]
        for index, spec in enumerate(self.stages(), start=1):
            previous = steps[-1].fingerprint
            step_print = fingerprint(previous, spec.identity, options_to_dict(spec.options),
                                     self.recipe.run.seed, self._model_fingerprint(spec),
                                     spec.plugin.fingerprint_extra(spec.options),
                                     *self._run_folder_fingerprint(spec),
                                     *self._recipe_fingerprint(spec))
            steps.append(PlannedStep(index, spec.name, spec.use,
                                     self.folder.step_dir(index, spec.name), step_print, spec))
        return steps

    def stages(self) -> list[PluginSpec]:
        """The recipe's stages, then the chat-template step when the recipe has a [model]."""
        return [*self.recipe.stages, *template_steps(self.recipe, self.host)]

    def check_until(self, until: str | None) -> None:
        """Refuse an unknown --until before the run folder is touched."""
        names = [READ_STEP, *(spec.name for spec in self.stages())]
        if until is not None and until not in names:
            raise CurateError(f"--until {until}: no such step in {self.recipe.file.name}"
                              f" (steps: {', '.join(names)})")

    def _model_fingerprint(self, spec: PluginSpec) -> dict | None:
        """[model], for a stage that counts tokens with its tokenizer, and the tokenizer files'
        digests when they are local: a tokenizer swapped in the same folder reruns the stage.
        A hub id stands for itself (and its revision, when pinned)."""
        if not spec.plugin.needs_model(spec.options):
            return None
        model = options_to_dict(self.recipe.model)
        if Path(tokenizer_location(self.recipe.model, self.recipe.file.parent)).exists():
            model["tokenizer_files"] = self._tokenizer_digests
        return model

    @cached_property
    def _tokenizer_digests(self) -> list[str]:
        return tokenizer_digests(self.recipe.model, self.recipe.file.parent,
                                 TOKENIZER_FILES + COUNTING_FILES)

    def _run_folder_fingerprint(self, spec: PluginSpec) -> list:
        # Only stages that read the run folder add a part, so other fingerprints stay as they were.
        extra = spec.plugin.run_folder_fingerprint(spec.options, self.folder.path)
        return [extra] if extra else []

    def _recipe_fingerprint(self, spec: PluginSpec) -> list:
        """The data of the source tables a stage's options hold, and [split] when it reads it;
        only stages that have them add a part, so other fingerprints stay as they were."""
        parts = [[key, *self._source_fingerprint(source)]
                 for key, source in sorted(spec.sources.items())]
        if spec.plugin.needs_split(spec.options):
            parts.append(options_to_dict(self.recipe.split))
        return [parts] if parts else []

    def _source_fingerprint(self, spec: PluginSpec) -> list:
        context = source_context(self.recipe, spec)
        with file_errors(context):
            data = spec.plugin().fingerprint(spec.options, context)
        return [spec.name, spec.identity, options_to_dict(spec.options),
                options_to_dict(spec.source_options), data]

    def _read_fingerprint(self) -> str:
        parts = [self._source_fingerprint(spec) for spec in self.recipe.sources]
        formats = [self.host.identity("format", name)
                   for name in self.host.registry("format").names()]
        return fingerprint(curate.__version__, RUN_FORMAT, RECORD_ID_SCHEME, READ_RULES, parts,
                           formats)


def source_context(recipe: Recipe, spec: PluginSpec) -> SourceContext:
    return SourceContext(recipe.file, spec.key_path, recipe.run.seed)
