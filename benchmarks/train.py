"""Training throughput and peak memory: curate's `qlora` trainer against plain trl SFTTrainer.

Both train the same locally built model (random weights), on the same generated chat data of
varied lengths, with the same settings (NF4 + double quantisation, LoRA r=8 on all linear
layers, batch 4 x accumulation 4, gradient checkpointing, assistant-only loss), with packing off
and on. Each configuration runs in its own process, so peak memory is its own. Prints tokens per
second of the training loop, the whole call's seconds, peak memory, and curate / trl ratios.

    python benchmarks/train.py [--examples 256] [--steps 8] [--hidden 64] [--layers 2]
    python benchmarks/train.py --gpu-8b [--steps 10] [--with-trl]   # Llama-3.1-8B shape
    python benchmarks/train.py --gpu-8b --rehearse   # the same path on a CPU, tiny shape

`--gpu-8b` needs a CUDA GPU: it trains a random-weight model of Llama 3.1 8B's shape (nothing
downloaded) with curate and prints measured peak memory next to `curate estimate`'s prediction.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("order refund shipping battery screen strap store pickup password account invoice "
         "delivery warranty replacement size colour discount receipt support hours").split()
SETTINGS = dict(quantization="nf4", lora_r=8, lora_alpha=16, lora_dropout=0.05, batch_size=4,
                gradient_accumulation=4, learning_rate=2e-4, warmup_steps=0.0,
                early_stopping_patience=0, logging_steps=1, gradient_checkpointing=True)


def build_data(path: Path, examples: int) -> None:
    """Conversations whose answers run from 5 to 300 words: the spread packing is for."""
    generator = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(examples):
            answer = " ".join(generator.choices(WORDS, k=generator.randint(5, 300)))
            handle.write(json.dumps({"messages": [
                {"role": "user", "content": " ".join(generator.choices(WORDS, k=12)) + "?"},
                {"role": "assistant", "content": answer}]}) + "\n")


def run_curate(model: Path, data: Path, work: Path, steps: int, packing: bool,
               max_length: int) -> dict:
    from curate.recipe import ModelOptions
    from curate.train.options import QLoRAOptions
    from curate.train.trainer import QLoRATrainer
    from curate.training import TrainContext

    options = QLoRAOptions(**SETTINGS, max_steps=steps, packing=packing)
    context = TrainContext(work, work, data, work / "none.jsonl", 0, lambda line: None,
                           ModelOptions(path=str(model), max_length=max_length))
    metrics = QLoRATrainer().train(options, context)
    return {"tokens": metrics["train_tokens"], "loop_seconds": metrics["train_seconds"]}


def run_trl(model: Path, data: Path, work: Path, steps: int, packing: bool,
            max_length: int) -> dict:
    """What one writes by hand following the trl and peft documentation."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=dtype)
    base = AutoModelForCausalLM.from_pretrained(model, quantization_config=quantization,
                                                dtype=dtype, device_map={"": 0} if cuda else None)
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=True)
    trainer = SFTTrainer(
        model=base, processing_class=AutoTokenizer.from_pretrained(model),
        train_dataset=load_dataset("json", data_files=str(data), split="train"),
        peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
        args=SFTConfig(output_dir=str(work), max_steps=steps, per_device_train_batch_size=4,
                       gradient_accumulation_steps=4, learning_rate=2e-4, logging_steps=1,
                       max_length=max_length, assistant_only_loss=True, packing=packing,
                       bf16=cuda, use_cpu=not cuda, report_to="none", save_strategy="no",
                       optim="paged_adamw_32bit" if cuda else "adamw_torch",
                       disable_tqdm=True))
    result = trainer.train()
    tokens = next(e["num_tokens"] for e in reversed(trainer.state.log_history)
                  if "num_tokens" in e)
    return {"tokens": tokens, "loop_seconds": result.metrics["train_runtime"]}


def worker(args) -> None:
    """One configuration, in this process: prints its measurements as JSON."""
    import torch

    started = time.perf_counter()
    run = run_curate if args.worker == "curate" else run_trl
    measured = run(Path(args.model), Path(args.data), Path(args.work), args.steps,
                   args.packing == "on", args.max_length)
    measured["call_seconds"] = time.perf_counter() - started
    measured["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        measured["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 1024**3
        measured["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 1024**3
    print("RESULT " + json.dumps(measured))


def measure(who: str, packing: str, model: Path, data: Path, root: Path, args) -> dict:
    work = root / f"{who}-{packing}"
    work.mkdir()
    command = [sys.executable, __file__, "--worker", who, "--packing", packing, "--model",
               str(model), "--data", str(data), "--work", str(work), "--steps", str(args.steps),
               "--max-length", str(args.max_length)]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{who} (packing {packing}) failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def compare(args) -> None:
    from curate.train.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data = root / "train.jsonl"
        build_data(data, args.examples)
        model = build_tiny_model(root / "model", [" ".join(WORDS)] * 20,
                                 hidden_size=args.hidden, layers=args.layers)
        print(f"model: random Llama, hidden {args.hidden}, {args.layers} layers; {args.examples}"
              f" examples of 5-300 words; {args.steps} steps of 4 x 4 examples")
        print(f"{'':<18}{'tokens/s':>10}{'loop s':>8}{'call s':>8}{'peak MiB':>10}")
        for packing in ("off", "on"):
            results = {who: measure(who, packing, model, data, root, args)
                       for who in ("trl", "curate")}
            for who, result in results.items():
                print(f"{who + ' packing ' + packing:<18}"
                      f"{result['tokens'] / result['loop_seconds']:>10,.0f}"
                      f"{result['loop_seconds']:>8.1f}{result['call_seconds']:>8.1f}"
                      f"{result['peak_rss_mib']:>10,.0f}")
            ours, theirs = results["curate"], results["trl"]
            speed = (ours["tokens"] / ours["loop_seconds"]) / (theirs["tokens"] /
                                                              theirs["loop_seconds"])
            print(f"{'curate / trl':<18}{speed:>10.2f}x{'':>16}"
                  f"{ours['peak_rss_mib'] / theirs['peak_rss_mib']:>9.2f}x")


def gpu_8b(args) -> None:
    import torch

    if args.rehearse:
        shape = {**llama_8b_shape(), "hidden_size": 64, "intermediate_size": 128,
                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                 "head_dim": 16}
        return against_estimate(args, shape, "a tiny Llama (rehearsal on the CPU)", "cpu")
    if not torch.cuda.is_available():
        print("--gpu-8b needs a CUDA GPU, and this machine has none: nothing measured"
              " (--rehearse runs the same path on the CPU with a tiny shape)")
        return
    against_estimate(args, llama_8b_shape(), "Llama-3.1-8B shape", "cuda")


def against_estimate(args, shape: dict, label: str, device: str) -> None:
    """Trains a random-weight model of `shape` with curate (and with plain trl when asked) and
    prints the measurements next to what `curate estimate` predicts for it."""
    import torch

    from curate.train.estimate import GIB, ModelShape, estimate
    from curate.train.options import QLoRAOptions
    from curate.train.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(dir=args.scratch) as folder:
        root = Path(folder)
        data = root / "train.jsonl"
        build_data(data, args.examples)
        model = build_tiny_model(root / "model", [" ".join(WORDS)] * 20)  # tokenizer only
        random_llama(shape, device).save_pretrained(model)
        if device == "cuda":
            torch.cuda.empty_cache()
        # packed, every batch is 4 full sequences: the worst case the estimate assumes
        results = {who: measure(who, "on", model, data, root, args)
                   for who in (("curate", "trl") if args.with_trl else ("curate",))}
        predicted = estimate(ModelShape.from_config(shape),
                             QLoRAOptions(**SETTINGS, max_steps=args.steps), args.max_length)
        print(f"{label}, random weights, packed batches of 4 x {args.max_length} tokens,"
              f" {args.steps} steps of 4 x 4:")
        for who, result in results.items():
            print(f"  {who:<7} tokens/s {result['tokens'] / result['loop_seconds']:,.0f};"
                  f" {peak_memory(result)}")
        for what, size, note in predicted.parts:
            print(f"  estimate  {what:<42} {size / GIB:6.2f} GiB")
        print(f"  estimate  {'total':<42} {predicted.total / GIB:6.2f} GiB (its CUDA allowance"
              f" is outside torch's counts)")


def peak_memory(result: dict) -> str:
    if "peak_gpu_gib" in result:
        return (f"peak GPU memory {result['peak_gpu_gib']:.2f} GiB allocated,"
                f" {result['peak_gpu_reserved_gib']:.2f} GiB reserved by torch")
    return f"peak RSS {result['peak_rss_mib']:,.0f} MiB (CPU: not comparable to the estimate)"


def llama_8b_shape() -> dict:
    from curate.train.shapes import SHAPES

    return {k: v for k, v in SHAPES["llama-3.1-8b"].items() if k != "architectures"}


def random_llama(shape: dict, device: str):
    """A bf16 LlamaForCausalLM of `shape` with random weights, built on `device` ("meta" checks
    the construction on a CPU in a second)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device(device):
        return LlamaForCausalLM(LlamaConfig(**shape, dtype="bfloat16")).to(torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--gpu-8b", action="store_true")
    parser.add_argument("--scratch", default=None, help="folder for the 8B model's 16 GB")
    parser.add_argument("--with-trl", action="store_true",
                        help="with --gpu-8b: also train with plain trl SFTTrainer")
    parser.add_argument("--rehearse", action="store_true",
                        help="run the --gpu-8b path on the CPU with a tiny shape")
    parser.add_argument("--worker", choices=("curate", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--packing", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    elif args.gpu_8b or args.rehearse:
        gpu_8b(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
