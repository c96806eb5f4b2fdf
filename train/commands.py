"""`curate estimate` (GPU memory for a recipe's training, without torch), `curate merge` (a
16-bit model from a trained adapter) and `curate train` (a run for `accelerate launch`)."""

from __future__ import annotations

from pathlib import Path

import click

from curate import hookimpl
from curate.errors import CurateError

DEFAULT_MAX_LENGTH = 2048


@hookimpl
def register_commands(register):
    register(estimate)
    register(merge)
    register(train)


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gpu-memory", type=click.FloatRange(min=0, min_open=True), metavar="GIB",
              help="Say whether it fits this much.")
@click.option("--shape", metavar="NAME", help="A bundled model shape instead of [model] path"
              " (llama-3.1-8b, llama-3.1-70b, qwen2.5-7b, mistral-7b, gemma-2-9b).")
def estimate(recipe: Path, gpu_memory: float | None, shape: str | None):
    """Estimate the GPU memory the recipe's [train] section needs, part by part.

    The model is known from its config alone: the config.json of a local [model] path, or a
    bundled shape matching its name. Nothing is downloaded or loaded.

    \b
    Examples:
      curate estimate recipe.toml --gpu-memory 24
      curate estimate recipe.toml --shape llama-3.1-70b --gpu-memory 80
    """
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.train import estimate as memory
    from curate.train.shapes import resolve_shape

    loaded = load_recipe(recipe, get_host())
    options = train_options(loaded)
    config, where = resolve_shape(loaded.model.path, loaded.file.parent, shape)
    model = memory.ModelShape.from_config(config)
    max_length = max_length_of(loaded.model)
    result = memory.estimate(model, options, max_length)
    params = (model.linear_params() + model.other_params()) / 1e9
    click.echo(f"model: {params:.2f}B parameters, {model.layers} layers, hidden {model.hidden}"
               f" ({where})")
    for what, size, note in result.parts:
        click.echo(f"  {what:<42} {size / memory.GIB:>7.2f} GiB" + (f"   {note}" if note else ""))
    other = "without" if options.gradient_checkpointing else "with"
    click.echo(f"  {'total':<42} {result.total / memory.GIB:>7.2f} GiB   (activations {other}"
               f" gradient checkpointing: {result.activations_other / memory.GIB:.2f} GiB)")
    if result.unknown_modules:
        click.echo(f"  not counted (unknown to this estimate): {', '.join(result.unknown_modules)}")
    if gpu_memory is not None:
        click.echo(memory.fits(model, options, max_length, gpu_memory))


def train_options(recipe):
    """The recipe's qlora options, or the defaults when its trainer is another one."""
    from curate.train.options import QLoRAOptions

    if recipe.train is not None and isinstance(recipe.train.options, QLoRAOptions):
        return recipe.train.options
    return QLoRAOptions()


def max_length_of(model_options) -> int:
    return getattr(model_options, "max_length", None) or DEFAULT_MAX_LENGTH


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the merged model (default: RUN_DIR/merged).")
@click.option("--into-quantized", is_flag=True, help="Merge into the re-quantised 4-bit base"
              " instead of its dequantised 16-bit weights: smaller, but outputs change (a"
              " quantization = \"none\" run has no quantised base: the flag does nothing).")
@click.option("--examples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Held-out examples the merged model is compared on; below 99% top-1"
              " agreement (near-ties aside) the merge warns, below 95% it fails.")
def merge(run_dir: Path, output: Path | None, into_quantized: bool, examples: int):
    """Merge a run's adapter into its base model and save a 16-bit model.

    By default the adapter is merged onto the dequantised weights of the 4-bit base it was
    trained against, and the merged model is compared with the adapter model on held-out
    examples: maximum logit difference and top-1 agreement.

    \b
    Examples:
      curate merge runs/train-quickstart
      curate merge runs/train-quickstart --output /models/support-8b
    """
    from curate.runstore import RunFolder
    from curate.train.merge import merge_run, summary_lines

    if not run_dir.is_dir():
        raise CurateError(f"{run_dir}: no such run folder")
    folder = RunFolder(run_dir)
    with folder.lock():  # not while a run trains or evaluates in the folder
        folder.check_training_finished("curate run RECIPE")
        report = merge_run(run_dir, output or run_dir / "merged", into_quantized, examples,
                           log=click.echo)
    for line in summary_lines(report):
        click.echo(line)


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: the recipe's [run] dir, else runs/<recipe stem>).")
@click.option("--force", is_flag=True, help="Rerun every step and the training.")
def train(recipe: Path, run_dir: Path | None, force: bool):
    """Run a recipe with training on several GPUs: launch it with accelerate or torchrun.

    The main process curates and writes the dataset, every process trains on it (DDP), then
    the main process finishes the run as `curate run` would. On one process it is `curate run`.

    \b
    Examples:
      accelerate launch --num_processes 4 -m curate train recipe.toml
      torchrun --nproc-per-node 2 -m curate train recipe.toml
    """
    from curate.train.multiprocess import train_on_every_process

    manifest, folder = train_on_every_process(recipe, run_dir, force)
    if manifest is not None and manifest["status"] == "complete":
        final = manifest["final"]
        click.echo(f"done: trained on {final['train']:,} examples ({final['eval']:,} held out);"
                   f" adapter in {folder / 'adapter'}")
