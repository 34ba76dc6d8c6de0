"""The shape of a causal LM, read from the fields of its config.json that drive memory. Plain Python."""

from dataclasses import dataclass

from qlorafit.errors import UserError

# Linear modules of a Llama-style decoder layer. Phi-3/4 fuse q/k/v into 'qkv_proj' and gate/up into 'gate_up_proj':
# the same parameters, but one module, so LoRA adapts one matrix (one dropped copy of the input, one lora_A) where a
# Llama has three. ModelShape.linear_shapes names the modules as the model has them; LORA_TARGET_ALIASES maps a
# fused name to its parts and back, so a target list written for one layout means the same on the other.
ATTN_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
ALL_LINEARS = ATTN_LINEARS + MLP_LINEARS
LORA_TARGET_ALIASES = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
FUSED_TYPES = ("phi3",)  # model types whose layers hold qkv_proj and gate_up_proj
MLP_NAMES = MLP_LINEARS + ("gate_up_proj",)


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know of a model: sizes only, no weights."""

    name: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    qk_norm: bool = False
    """RMSNorm on each query and key head before RoPE (Qwen3, Gemma 3): two more fp32 inputs saved per layer."""
    norms_per_layer: int = 2
    """RMSNorms around attention and MLP: 2 (pre-norm), 4 in Gemma 2 and 3 (pre- and post-norms)."""
    final_softcap: bool = False
    """tanh softcapping of the final logits (Gemma 2; Gemma 3 has none): one more vocabulary-sized tensor saved."""
    sliding_layers: int = 0
    """Layers with sliding-window attention. Training memory does not change: sdpa and flash never hold the T x T
    scores, and eager builds the full T x T mask and scores whatever the window. Recorded, shown, not counted."""
    num_experts: int = 0  # routed experts per MoE layer (0: a dense model)
    experts_per_token: int = 0  # experts each token is routed to (top-k)
    moe_intermediate_size: int = 0  # width of one routed expert's MLP
    shared_intermediate_size: int = 0
    """Total width of the always-on shared expert(s) of a MoE layer (Qwen2-MoE, DeepSeek); 0 if none."""
    moe_layers: int = 0  # decoder layers whose MLP is a MoE block; the others keep the dense MLP of intermediate_size
    expert_bias: bool = False  # expert MLPs and router carry biases (gpt-oss)
    fused: bool = False  # q/k/v and gate/up are one module each (qkv_proj, gate_up_proj), as in Phi-3 and Phi-4

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0 and self.moe_layers > 0

    @property
    def dense_layers(self) -> int:
        return self.num_layers - self.moe_layers

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear module of one dense decoder layer, named as in the model."""
        h, i = self.hidden_size, self.intermediate_size
        if self.fused:
            return {"qkv_proj": (h, self.q_dim + 2 * self.kv_dim), "o_proj": (self.q_dim, h),
                    "gate_up_proj": (h, 2 * i), "down_proj": (i, h)}
        return {
            "q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim), "o_proj": (self.q_dim, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    def layer_kinds(self) -> list[tuple[int, dict[str, tuple[int, int]], str]]:
        """[(how many layers, their nn.Linear shapes, 'dense' | 'moe')]: a MoE layer's linears are its attention and
        its shared expert; its routed experts are fused 3-D parameters (expert_params), never nn.Linear."""
        attn = {n: v for n, v in self.linear_shapes().items() if n not in MLP_NAMES}
        kinds = [(self.dense_layers, self.linear_shapes(), "dense"),
                 (self.moe_layers, {**attn, **self.shared_expert_shapes()}, "moe")]
        return [k for k in kinds if k[0] > 0]

    def expand_targets(self, targets: tuple[str, ...]) -> tuple[str, ...]:
        """LoRA target names -> this model's module names: 'all-linear' is every nn.Linear of a layer (not the routed
        experts, which are no nn.Linear); a fused name on an unfused model means its parts, a part on a fused model
        means the fused module. A name no layer has stays, and adapts nothing."""
        names = list(dict.fromkeys(n for _, shapes, _ in self.layer_kinds() for n in shapes))
        out: list[str] = []
        for t in targets:
            if t == "all-linear":
                out.extend(names)
            elif t in names:
                out.append(t)
            elif t in LORA_TARGET_ALIASES:
                out.extend(p for p in LORA_TARGET_ALIASES[t] if p in names)
            else:
                out.extend([f for f, parts in LORA_TARGET_ALIASES.items() if t in parts and f in names] or [t])
        return tuple(dict.fromkeys(out))

    def shared_expert_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of a MoE layer's shared-expert linears, named like the dense MLP's (PEFT matches those names)."""
        h, i = self.hidden_size, self.shared_intermediate_size
        return {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)} if i else {}

    def quantized_linear_params(self) -> int:
        """Parameters in nn.Linear modules of the decoder, the ones bitsandbytes quantizes: attention in every layer,
        the dense MLP in dense layers, the shared experts in MoE layers. Not the routed experts (expert_params)."""
        return sum(n * sum(a * b for a, b in shapes.values()) for n, shapes, _ in self.layer_kinds())

    def expert_params(self) -> int:
        """Routed experts of all MoE layers: gate, up and down of each (plus biases in gpt-oss). transformers 5
        stores them fused in 3-D parameters (experts.gate_up_proj, experts.down_proj), not nn.Linear modules."""
        h, mi = self.hidden_size, self.moe_intermediate_size
        per_expert = 3 * h * mi + ((2 * mi + h) if self.expert_bias else 0)
        return self.moe_layers * self.num_experts * per_expert

    def router_params(self) -> int:
        """The routers (one hidden -> num_experts projection per MoE layer, plus a shared-expert gate if any)."""
        per_layer = self.num_experts * (self.hidden_size + self.expert_bias) + (
            self.hidden_size if self.shared_intermediate_size else 0)
        return self.moe_layers * per_layer

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def norm_params(self) -> int:
        """RMSNorm weights: two per layer (four in Gemma 2 and 3), q/k norms of head_dim each, and the final one."""
        qk = 2 * self.head_dim if self.qk_norm else 0
        return (self.norms_per_layer * self.num_layers + 1) * self.hidden_size + qk * self.num_layers

    def total_params(self) -> int:
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params()
        return (self.quantized_linear_params() + self.expert_params() + self.router_params()
                + self.embedding_params() + lm_head + self.norm_params())


_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def shape_from_config(cfg: dict, name: str, source: str = "config.json") -> ModelShape:
    """Build a ModelShape from a config.json dict. Every missing or bad field is reported at once, naming `source`."""
    if not isinstance(cfg, dict):
        raise UserError(f"{source}: expected a JSON object, got {type(cfg).__name__}")
    text = cfg.get("text_config")
    if isinstance(text, dict) and "hidden_size" not in cfg:  # multimodal wrappers keep the LM in text_config
        cfg = text
    problems = []
    for key in _REQUIRED:
        v = cfg.get(key)
        if v is None:
            problems.append(f"missing field '{key}'")
        elif not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            problems.append(f"field '{key}' must be a positive integer, got {v!r}")
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    if not isinstance(kv, int) or kv <= 0 or heads % kv:
        raise UserError(f"{source}: field 'num_key_value_heads' must divide num_attention_heads ({heads}), got {kv!r}")
    if not isinstance(head_dim, int) or head_dim <= 0:
        raise UserError(f"{source}: field 'head_dim' must be a positive integer, got {head_dim!r}")
    model_type = str(cfg.get("model_type", "llama"))
    moe = _moe_fields(cfg, source)
    gemma = model_type.startswith(("gemma2", "gemma3"))
    # Gemma 2 configs written before the field existed still softcap: transformers' Gemma2Config defaults it to 30
    softcap = cfg.get("final_logit_softcapping", 30.0 if model_type == "gemma2" else None)
    return ModelShape(
        name=name,
        model_type=model_type,
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        vocab_size=cfg["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qk_norm=model_type in QK_NORM_TYPES,
        norms_per_layer=4 if gemma else 2,
        final_softcap=bool(softcap),
        sliding_layers=_sliding_layers(cfg, model_type),
        fused=model_type in FUSED_TYPES,
        **moe,
    )


# model types whose attention normalizes each query and key head (q_norm / k_norm modules)
QK_NORM_TYPES = ("qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2", "olmoe")

# The config fields MoE families use for the same facts, first match wins
_EXPERTS = ("num_experts", "num_local_experts", "n_routed_experts")
_TOP_K = ("num_experts_per_tok", "experts_per_token", "moe_topk")


def _first(cfg: dict, keys: tuple[str, ...]) -> int:
    return next((cfg[k] for k in keys if isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)), 0)


def _moe_fields(cfg: dict, source: str) -> dict:
    """ModelShape's MoE fields from the spellings of Mixtral, Qwen2/3-MoE, DeepSeek, gpt-oss and OLMoE configs."""
    experts = _first(cfg, _EXPERTS)
    if experts <= 0:
        return {}
    top_k = _first(cfg, _TOP_K) or 2
    if top_k > experts:
        raise UserError(f"{source}: num_experts_per_tok ({top_k}) is larger than the number of experts ({experts})")
    layers = cfg["num_hidden_layers"]
    # Mixtral and gpt-oss give the expert width as intermediate_size; Qwen and DeepSeek as moe_intermediate_size
    width = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
    if cfg.get("shared_expert_intermediate_size"):  # Qwen2-MoE
        shared = cfg["shared_expert_intermediate_size"]
    else:  # DeepSeek: n_shared_experts experts of moe_intermediate_size each
        shared = (cfg.get("n_shared_experts") or 0) * width
    # which layers are MoE: Qwen's decoder_sparse_step / mlp_only_layers, DeepSeek's first_k_dense_replace
    step = cfg.get("decoder_sparse_step") or 1
    dense_only = set(cfg.get("mlp_only_layers") or [])
    first_dense = cfg.get("first_k_dense_replace") or 0
    moe_layers = sum(1 for i in range(layers)
                     if i not in dense_only and (i + 1) % step == 0 and i >= first_dense)
    return dict(num_experts=experts, experts_per_token=top_k, moe_intermediate_size=width,
                shared_intermediate_size=shared, moe_layers=moe_layers,
                expert_bias=str(cfg.get("model_type")) == "gpt_oss")


def _sliding_layers(cfg: dict, model_type: str) -> int:
    types = cfg.get("layer_types")
    if isinstance(types, list):
        return sum(1 for t in types if t == "sliding_attention")
    if not cfg.get("sliding_window") or cfg.get("use_sliding_window") is False:
        return 0
    pattern = cfg.get("sliding_window_pattern")
    if model_type.startswith("gemma3") and isinstance(pattern, int) and pattern > 0:  # every pattern-th is global
        return cfg["num_hidden_layers"] - cfg["num_hidden_layers"] // pattern
    if model_type.startswith("gemma2"):  # alternating local / global
        return cfg["num_hidden_layers"] // 2 + cfg["num_hidden_layers"] % 2
    return cfg["num_hidden_layers"]
