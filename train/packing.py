"""Packing is allowed only where packed examples stay isolated from each other.

trl packs with best-fit decreasing and restarts `position_ids` at every example, without an
attention mask; whether attention then stops at the example boundaries depends on the model's
code (transformers builds a per-example mask from the position ids for its own architectures;
other code may not). So it is measured, not assumed: one short example's logits, alone and
packed behind another one, must agree.
"""

from __future__ import annotations

from curate.errors import CurateError

FIRST, SECOND = 7, 5
"""Lengths of the two probe sequences."""
ISOLATION_SHARE = 0.05
"""Packed logits may differ from the lone example's by at most this share of the difference a
plain concatenation (no isolation at all) makes."""


def packing_leak(model) -> tuple[float, float]:
    """(difference packed vs alone, difference concatenated vs alone): max absolute logit
    differences on the second sequence."""
    import torch

    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(3, vocab, (1, FIRST), generator=generator)
    second = torch.randint(3, vocab, (1, SECOND), generator=generator)
    joined = torch.cat([first, second], dim=1)
    restart = torch.cat([torch.arange(FIRST), torch.arange(SECOND)]).unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = _logits(model, second)
            packed = _logits(model, joined, position_ids=restart)[:, FIRST:]
            concatenated = _logits(model, joined)[:, FIRST:]
    finally:
        model.train(was_training)
    return (float((packed - alone).abs().max()), float((concatenated - alone).abs().max()))


def _logits(model, input_ids, position_ids=None):
    device = next(model.parameters()).device
    kwargs = {"position_ids": position_ids.to(device)} if position_ids is not None else {}
    return model(input_ids=input_ids.to(device), use_cache=False, **kwargs).logits.float()


def require_isolated_packing(model) -> None:
    leak, unisolated = packing_leak(model)
    if leak <= ISOLATION_SHARE * unisolated:
        return
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    architecture = type(base).__name__
    implementation = getattr(model.config, "_attn_implementation", "?")
    raise CurateError(f"[train] packing: with this model ({architecture}, attention"
                      f" '{implementation}') packed examples attend to each other (logits move"
                      f" by {leak:.3g}, as much as {leak / max(unisolated, 1e-12):.0%} of no"
                      f" isolation at all), so packing is refused: set packing = false")
