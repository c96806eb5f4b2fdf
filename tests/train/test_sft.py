"""The training loop itself, on the tiny NF4 model: what changes, what carries the loss, what
the saved adapter reproduces, and that gradient accumulation does not change the loss."""

import pytest
import torch

from curate.train.card import save_adapter
from curate.train.data import to_dataset
from curate.train.model import ModelSource, load_for_training, load_base_model
from curate.train.options import QLoRAOptions
from curate.train.sft import Hardware, RunPaths, build_trainer, match_adapter_dtype, sft_config
from curate.train.template import TrainingTemplate

from .conftest import memorisation_rows

CPU = Hardware(cuda=False, compute_dtype="float32", optimizer="adamw_torch")


def make_trainer(model_dir, out_dir, rows, **overrides):
    options = QLoRAOptions(**{"learning_rate": 1e-2, "lora_dropout": 0.0, "batch_size": 4,
                              "gradient_accumulation": 1, "max_steps": 2, "logging_steps": 1,
                              "early_stopping_patience": 0, **overrides})
    source = ModelSource(str(model_dir), str(model_dir))
    model, tokenizer = load_for_training(source, options, "float32", seed=0)
    config = sft_config(options, RunPaths(out_dir), CPU, 64, has_eval=False, seed=0)
    trainer = build_trainer(model, tokenizer, config, to_dataset(rows), None, [])
    match_adapter_dtype(model, "float32")
    return trainer, model, tokenizer


def logits_of(model, tokenizer, text="What is the code word 3?"):
    ids = tokenizer(text, return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_only_lora_parameters_change(tiny_model, tmp_path):
    trainer, model, _ = make_trainer(tiny_model, tmp_path, memorisation_rows(8))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    lora_b = {name for name in before if "lora_B" in name}
    assert lora_b and lora_b <= changed
    assert all("lora_" in name for name in changed), sorted(changed)


def test_the_end_of_turn_token_is_among_the_trained_labels(tiny_model, tmp_path):
    trainer, _, tokenizer = make_trainer(tiny_model, tmp_path, memorisation_rows(4))
    batch = trainer.data_collator([trainer.train_dataset[0]])
    trained = [t for t in batch["labels"][0].tolist() if t != -100]
    assert trained[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(trained) == "The code word 0 is apple.<|im_end|>"


def test_the_saved_adapter_reloads_to_the_same_logits(tiny_model, tmp_path):
    from peft import PeftModel

    trainer, model, tokenizer = make_trainer(tiny_model, tmp_path, memorisation_rows(8))
    trainer.train()
    expected = logits_of(model, tokenizer)
    template = TrainingTemplate(tokenizer.chat_template, "own", "test", ("<|im_end|>",))
    save_adapter(trainer, tokenizer, tmp_path / "adapter", template, print)
    base = load_base_model(ModelSource(str(tiny_model), str(tiny_model)), QLoRAOptions(),
                           "float32")
    untrained = logits_of(base, tokenizer)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert (untrained - expected).abs().max() > 1e-3  # training moved the logits
    torch.testing.assert_close(logits_of(reloaded, tokenizer), expected, rtol=0, atol=1e-5)
    assert (tmp_path / "adapter" / "chat_template.training.jinja").read_text() == template.text


@pytest.mark.parametrize("quantization,layer", [("nf4", "Linear4bit"), ("fp4", "Linear4bit"),
                                                ("8bit", "Linear8bitLt")])
def test_the_base_is_really_quantised(tiny_model, quantization, layer):
    model = load_base_model(ModelSource(str(tiny_model), str(tiny_model)),
                            QLoRAOptions(quantization=quantization), "float32")
    projection = model.model.layers[0].self_attn.q_proj
    assert type(projection).__name__ == layer
    if layer == "Linear4bit":
        assert projection.weight.quant_type == quantization
        assert projection.weight.quant_state.nested  # double quantisation
        assert projection.weight.dtype == torch.uint8


def test_splitting_a_batch_into_accumulation_steps_leaves_the_loss_unchanged(tiny_model,
                                                                           tmp_path):
    rows = memorisation_rows(4)  # answers of different lengths: per-token weighting matters
    whole, whole_model, _ = make_trainer(tiny_model, tmp_path / "a", rows, max_steps=1)
    split, split_model, _ = make_trainer(tiny_model, tmp_path / "b", rows, max_steps=1,
                                         batch_size=2, gradient_accumulation=2)
    whole.train()
    split.train()
    assert split.state.log_history[0]["loss"] == pytest.approx(
        whole.state.log_history[0]["loss"], rel=1e-5)
    for (name, a), (_, b) in zip(whole_model.named_parameters(), split_model.named_parameters()):
        if "lora_" in name:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
