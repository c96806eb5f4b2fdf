"""How much GPU memory a QLoRA run needs, from a model's config alone (no torch, no weights).

Parts: the base weights at their quantisation (4-bit linear layers carry one scale per 64
weights: 32 bits, or ~8.1 with double quantisation); the layers bitsandbytes leaves in 16 bits
(embeddings, lm_head, norms), which `prepare_model_for_kbit_training` casts to fp32; the LoRA
weights, gradients and AdamW states; activations per token and layer (all of them, or only each
layer's input with gradient checkpointing plus one layer being recomputed); trl's chunked loss;
a fixed allowance for the CUDA context and allocator. An estimate to plan with, not a promise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from curate.train.options import QLoRAOptions

GIB = 1024**3
BLOCK = 64
"""bitsandbytes 4-bit block size: one scale per 64 weights."""
SCALE_BITS = 32 / BLOCK
DOUBLE_QUANT_SCALE_BITS = 8 / BLOCK + 32 / (BLOCK * 256)
RUNTIME_OVERHEAD = 1.0 * GIB
LOSS_TOKEN_TILE, LOSS_VOCAB_TILE = 4096, 32768
"""trl scores the vocabulary in tiles of at most these many tokens x vocabulary entries."""
ACTIVATION_BYTES = 2
SHORT_LENGTH, LOW_RANK = 512, 16
"""The shortest max_length and lowest lora_r the hint suggests: below them the task suffers."""


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        heads = config["num_attention_heads"]
        hidden = config["hidden_size"]
        return cls(hidden, config["intermediate_size"], config["num_hidden_layers"], heads,
                   config.get("num_key_value_heads") or heads,
                   config.get("head_dim") or hidden // heads, config["vocab_size"],
                   bool(config.get("tie_word_embeddings", False)))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer, by module name."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, \
            self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    def other_params(self) -> int:
        """Embeddings, lm_head (unless tied) and norms: what bitsandbytes does not quantise."""
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + (2 * self.layers + 1) * self.hidden


@dataclass
class Estimate:
    parts: list[tuple[str, float, str]] = field(default_factory=list)
    """(what, bytes, note)."""
    activations_other: float = 0.0
    """Activations with gradient checkpointing switched the other way, for comparison."""
    trained_params: int = 0
    unknown_modules: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(size for _, size, _ in self.parts)


def estimate(shape: ModelShape, options: QLoRAOptions, max_length: int) -> Estimate:
    result = Estimate()
    result.parts.append(_base_weights(shape, options))
    result.parts.append(_unquantised_layers(shape, options))
    result.trained_params, result.unknown_modules = trained_parameters(shape, options)
    result.parts += _training_state(result.trained_params, options)
    tokens = options.batch_size * max_length
    chosen = activation_bytes(shape, options, tokens, options.gradient_checkpointing)
    result.activations_other = activation_bytes(shape, options, tokens,
                                                 not options.gradient_checkpointing)
    how = "with" if options.gradient_checkpointing else "without"
    result.parts.append((f"activations, {how} gradient checkpointing", chosen,
                         f"{options.batch_size} x {max_length} tokens"))
    result.parts.append(("loss (trl's chunked log-probabilities)", _loss_bytes(shape, tokens), ""))
    result.parts.append(("CUDA context and allocator", RUNTIME_OVERHEAD, "allowance"))
    return result


def weight_bits(options: QLoRAOptions) -> float:
    if options.quantization in ("nf4", "fp4"):
        return 4 + (DOUBLE_QUANT_SCALE_BITS if options.double_quantization else SCALE_BITS)
    return {"8bit": 8.0, "none": 16.0}[options.quantization]


def _base_weights(shape: ModelShape, options: QLoRAOptions) -> tuple[str, float, str]:
    params = shape.linear_params()
    bits = weight_bits(options)
    note = f"{params / 1e9:.2f}B parameters at {bits:.3g} bits"
    if options.quantization in ("nf4", "fp4") and options.double_quantization:
        saved = params * (SCALE_BITS - DOUBLE_QUANT_SCALE_BITS) / 8
        note += f"; double quantisation saves {saved / GIB:.2f} GiB"
    label = {"nf4": "NF4", "fp4": "FP4", "8bit": "8-bit", "none": "16-bit"}[options.quantization]
    return f"base linear layers, {label}", params * bits / 8, note


def _unquantised_layers(shape: ModelShape, options: QLoRAOptions) -> tuple[str, float, str]:
    quantised = options.quantization != "none"
    width = 4 if quantised else 2
    note = "fp32 after prepare_model_for_kbit_training" if quantised else "16-bit"
    return "embeddings, lm_head, norms", shape.other_params() * width, note


def trained_parameters(shape: ModelShape, options: QLoRAOptions) -> tuple[int, list[str]]:
    """LoRA parameters (plus DoRA magnitudes and modules_to_save), and target names this
    estimate does not know."""
    linears = shape.linear_shapes()
    targeted, unknown = targeted_linears(shape, options)
    per_layer = sum(options.lora_r * (linears[n][0] + linears[n][1]) +
                    (linears[n][1] if options.use_dora else 0) for n in targeted)
    full = {"lm_head": shape.vocab * shape.hidden, "embed_tokens": shape.vocab * shape.hidden}
    saved = sum(full.get(name, 0) for name in {module_name(n) for n in options.modules_to_save})
    unknown += [name for name in options.modules_to_save if module_name(name) not in full]
    return shape.layers * per_layer + saved, unknown


def targeted_linears(shape: ModelShape, options: QLoRAOptions) -> tuple[list[str], list[str]]:
    """The linear layers of a decoder layer that target_modules picks, and the targets that
    name none of them."""
    linears = shape.linear_shapes()
    if options.target_modules == "all-linear":
        return list(linears), []
    names = {module_name(target) for target in options.target_modules}
    return ([name for name in linears if name in names],
            [target for target in options.target_modules if module_name(target) not in linears])


def module_name(target: str) -> str:
    """The short name of the module a peft target picks: peft matches a module whose full name
    is the target or ends with "." + target, so "self_attn.q_proj" picks the q_proj layers."""
    return target.rsplit(".", 1)[-1]


def _training_state(params: int, options: QLoRAOptions) -> list[tuple[str, float, str]]:
    # trl casts adapters on a quantised base to bf16; peft keeps them in fp32 on a 16-bit base
    width, dtype = (2, "bf16") if options.quantization != "none" else (4, "fp32")
    optimizer = options.optimizer
    if "8bit" in optimizer:
        state, note = 2, "2 x 8-bit"
    elif optimizer == "adamw_torch":
        state, note = 2 * width, f"2 x {dtype}"
    else:
        state, note = 8, "2 x fp32"
    return [(f"trained weights + gradients ({dtype})", params * width * 2,
             f"{params / 1e6:.1f}M parameters"),
            ("optimizer states", params * state, note)]


def activation_bytes(shape: ModelShape, options: QLoRAOptions, tokens: int,
                     checkpointing: bool) -> float:
    """Bytes of activations kept for the backward pass, in bf16, with sdpa/flash attention."""
    h, kv, i = shape.hidden, shape.kv_heads * shape.head_dim, shape.intermediate
    q = shape.heads * shape.head_dim
    attention = 2 * h + 3 * q + 3 * kv  # norm in/out, q, k, v, rotated q and k, attention out
    mlp = 2 * h + 4 * i  # norm in/out, gate, up, act(gate), act(gate) * up
    dropout = lora_inputs(shape, options) if options.lora_dropout > 0 else 0  # a copy of each
    per_layer = (attention + mlp + dropout) * ACTIVATION_BYTES * tokens
    if checkpointing:
        return shape.layers * h * ACTIVATION_BYTES * tokens + per_layer
    return shape.layers * per_layer


def lora_inputs(shape: ModelShape, options: QLoRAOptions) -> int:
    """Features into the targeted linear layers of one decoder layer."""
    linears = shape.linear_shapes()
    return sum(linears[name][0] for name in targeted_linears(shape, options)[0])


def _loss_bytes(shape: ModelShape, tokens: int) -> float:
    tile = min(tokens, LOSS_TOKEN_TILE) * min(shape.vocab, LOSS_VOCAB_TILE) * 4
    return 2 * tile + 2 * tokens * shape.hidden * 4


def fits(shape: ModelShape, options: QLoRAOptions, max_length: int, gpu_gib: float) -> str:
    """Whether the training fits `gpu_gib`, and if not, which changes would save what."""
    total = estimate(shape, options, max_length).total / GIB
    if total <= gpu_gib:
        return f"fits in {gpu_gib:g} GiB with {gpu_gib - total:.1f} GiB to spare"
    short = f"does not fit in {gpu_gib:g} GiB: {total - gpu_gib:.1f} GiB short"
    lean_options, lean_length = leanest(options, max_length)
    least = estimate(shape, lean_options, lean_length).total / GIB
    if least > gpu_gib:
        return (f"{short}; no change of batch, length, checkpointing, quantisation or rank fits"
                f" it in {gpu_gib:g} GiB: the base weights alone need"
                f" {weights_bytes(shape, lean_options) / GIB:.1f} GiB in"
                f" {lean_options.quantization.upper()} ({least:.1f} GiB in all at the leanest):"
                f" use a GPU with more memory or a smaller model")
    tries = [(text, total - estimate(shape, changed, length).total / GIB)
             for text, changed, length in changes(options, max_length)]
    hint = f"{short}; try " + ", ".join(f"{text} (saves {saved:.1f} GiB)" for text, saved in tries)
    if all(total - saved > gpu_gib for _, saved in tries):
        hint += f"; none is enough alone: all of them, at their leanest, need {least:.1f} GiB"
    return hint


def weights_bytes(shape: ModelShape, options: QLoRAOptions) -> float:
    """The base model's weights as training holds them."""
    return _base_weights(shape, options)[1] + _unquantised_layers(shape, options)[1]


def changes(options: QLoRAOptions, max_length: int) -> list[tuple[str, QLoRAOptions, int]]:
    """Changes that would lower the estimate from these options, most effective first:
    (what to write, the options with it, the max_length with it)."""
    found = []
    if not options.gradient_checkpointing:
        found.append(("gradient_checkpointing = true",
                      replace(options, gradient_checkpointing=True), max_length))
    if options.quantization not in ("nf4", "fp4"):
        found.append(('quantization = "nf4"', replace(options, quantization="nf4"), max_length))
    elif not options.double_quantization:
        found.append(("double_quantization = true", replace(options, double_quantization=True),
                      max_length))
    if options.batch_size > 1:
        smaller = options.batch_size // 2
        accumulation = options.gradient_accumulation * options.batch_size // smaller
        found.append((f"batch_size = {smaller} with gradient_accumulation = {accumulation}",
                      replace(options, batch_size=smaller, gradient_accumulation=accumulation),
                      max_length))
    if max_length > SHORT_LENGTH:
        shorter = max(SHORT_LENGTH, max_length // 2)
        found.append((f"[model] max_length = {shorter} instead of {max_length}", options,
                      shorter))
    if options.lora_r > LOW_RANK:
        found.append((f"lora_r = {LOW_RANK} instead of {options.lora_r}",
                      replace(options, lora_r=LOW_RANK), max_length))
    return found


def leanest(options: QLoRAOptions, max_length: int) -> tuple[QLoRAOptions, int]:
    """Every change `changes` offers, taken as far as it goes."""
    quantization = options.quantization if options.quantization in ("nf4", "fp4") else "nf4"
    return (replace(options, gradient_checkpointing=True, quantization=quantization,
                    double_quantization=True, batch_size=1,
                    lora_r=min(options.lora_r, LOW_RANK)),
            min(max_length, SHORT_LENGTH))

