"""The shape of a causal LM, read from the fields of its config.json that drive memory. Plain Python."""

from dataclasses import dataclass

from qlorafit.errors import UserError

# Linear modules of a Llama-style decoder layer. Models that fuse q/k/v (Phi-3 'qkv_proj') or gate/up ('gate_up_proj')
# hold the same parameters, so the estimate counts them as if unfused; their names map in LORA_TARGET_ALIASES.
ATTN_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
ALL_LINEARS = ATTN_LINEARS + MLP_LINEARS
LORA_TARGET_ALIASES = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


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
    qkv_bias: bool = False

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear module of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim), "o_proj": (self.q_dim, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    def linear_params_per_layer(self) -> int:
        return sum(a * b for a, b in self.linear_shapes().values())

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def norm_params(self) -> int:
        """RMSNorm weights: two per layer (four in Gemma 2) and the final one."""
        per_layer = 4 if self.model_type == "gemma2" else 2
        return (per_layer * self.num_layers + 1) * self.hidden_size

    def total_params(self) -> int:
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params()
        return self.num_layers * self.linear_params_per_layer() + self.embedding_params() + lm_head + self.norm_params()


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
        qkv_bias=bool(cfg.get("attention_bias", model_type == "qwen2")),
    )
