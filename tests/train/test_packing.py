"""Packing is allowed only where packed examples cannot see each other."""

import pytest

from curate.errors import CurateError
from curate.train.packing import packing_leak, require_isolated_packing


def load(tiny_model, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, **kwargs)


def test_llama_keeps_packed_examples_apart(tiny_model):
    leak, unisolated = packing_leak(load(tiny_model))
    assert leak < 1e-4 < unisolated
    require_isolated_packing(load(tiny_model))


def test_packing_is_refused_with_the_reason_where_attention_ignores_the_boundaries(tiny_model):
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def causal_only(module, query, key, value, attention_mask, **kwargs):
        # a kernel that only knows "causal": the per-example mask is dropped
        return sdpa_attention_forward(module, query, key, value, None,
                                      **{**kwargs, "is_causal": True})

    AttentionInterface.register("causal_only", causal_only)
    with pytest.raises(CurateError) as error:
        require_isolated_packing(load(tiny_model, attn_implementation="causal_only"))
    message = str(error.value)
    assert message.startswith("[train] packing: with this model (LlamaForCausalLM, attention"
                              " 'causal_only') packed examples attend to each other")
    assert message.endswith("so packing is refused: set packing = false")


def test_packed_training_batches_restart_positions_per_example(tiny_model, tmp_path):
    from .test_sft import make_trainer
    from .conftest import memorisation_rows

    trainer, _, _ = make_trainer(tiny_model, tmp_path, memorisation_rows(6), packing=True)
    batch = next(iter(trainer.get_train_dataloader()))
    positions = batch["position_ids"][0].tolist()
    assert positions.count(0) >= 2 and "attention_mask" not in batch
    trainer.train()
    assert trainer.state.global_step == 2
