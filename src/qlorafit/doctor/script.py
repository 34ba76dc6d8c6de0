"""A user's training script, read by static analysis only: the file is parsed with `ast`, never imported or run.

What is picked out: the model id and kwargs of the model's `from_pretrained`, `BitsAndBytesConfig`, `LoraConfig`
(or Unsloth's `get_peft_model`), `TrainingArguments`/`SFTConfig` and the `Trainer`/`SFTTrainer` arguments. A keyword
whose value is a name assigned earlier in the file (`quantization_config=bnb_config`, `model_id = "..."`) is resolved
to that assignment. Values that are not literals stay as their source text.
"""

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from qlorafit.doctor.prose import ADAPTER_WORDS
from qlorafit.doctor.settings import Depends
from qlorafit.errors import UserError

MODEL_OWNER = re.compile(r"(AutoModel\w*|\w*ForCausalLM|\w*ForConditionalGeneration|AutoPeftModel\w*|FastLanguageModel|"
                         r"FastModel|FastVisionModel)$")
_LABEL_HEAD = re.compile(r"For(?:SequenceClassification|TokenClassification|MultipleChoice|QuestionAnswering)$")
TRAINER_CALLS = ("Trainer", "Seq2SeqTrainer", "SFTTrainer", "DPOTrainer", "GRPOTrainer", "ORPOTrainer", "KTOTrainer",
                 "RewardTrainer", "PPOTrainer", "OnlineDPOTrainer")
"""transformers' and TRL's trainers: the calls that train what they are given."""
CALLS = ("BitsAndBytesConfig", "LoraConfig", "TrainingArguments", "Seq2SeqTrainingArguments", "SFTConfig", "DPOConfig",
         "GRPOConfig", "ORPOConfig", "KTOConfig", "RewardConfig", "PPOConfig", "OnlineDPOConfig", "LLM",
         "get_peft_model", "prepare_model_for_kbit_training", "gradient_checkpointing_enable", "DataLoader",
         "pipeline") + TRAINER_CALLS
_DEPTH = 6
CONFIG_DEFAULTS = {"ModelConfig": {"dtype": "float32"}}
"""Defaults of the config objects scripts read their model settings from, where a field left out decides memory: TRL
1.x's ModelConfig loads the model 'under this dtype', float32 unless set (trl/trainer/model_config.py). A script that
passes `dtype=model_args.dtype` from a ModelConfig without a dtype loads every weight in 4 bytes."""
_CONFIG_CALL = re.compile(r"(?:Config|Arguments|Args)$")
"""A call that builds a config object (ModelConfig, SFTConfig, TrainingArguments, ScriptArguments): its fields are the
keywords it was built with."""


@dataclass
class CallRef:
    """A call found in the script: its name, line, and keyword arguments as (value, source text)."""

    name: str
    owner: str
    line: int
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)

    def value(self, key, default=None):
        return self.kwargs[key][0] if key in self.kwargs else default

    def src(self, key) -> str:
        return self.kwargs[key][1] if key in self.kwargs else ""


@dataclass
class ScriptInfo:
    path: str
    text: str
    model_call: CallRef | None = None
    calls: dict = field(default_factory=dict)  # name -> list of CallRef, in source order
    settings: dict = field(default_factory=dict)
    """HF-named settings (qlorafit.doctor.settings) read from the calls above."""
    assigns: dict = field(default_factory=dict)
    """Attribute assignments seen, 'tokenizer.pad_token' -> (line, source text)."""
    assigned: dict = field(default_factory=dict)
    """The same attribute assignments' values where they resolve ('training_args.model_init_kwargs' -> a dict)."""

    def first(self, name: str) -> CallRef | None:
        return (self.calls.get(name) or [None])[0]

    @property
    def model_id(self):
        return self.settings.get("model")

    @property
    def backward_by_hand(self) -> bool:
        """The script runs a backward itself (its own training loop, plain or through accelerate)."""
        return bool(_BACKWARD.search(self.text))

    @property
    def grades(self) -> re.Match | None:
        """The words by which the script grades the model's outputs (_GRADES), or None."""
        return _GRADES.search(self.text)

    @property
    def trains(self) -> bool:
        """The script trains: a backward of its own, a trainer, or an optimizer step."""
        return self.backward_by_hand or bool(_TRAINS.search(self.text))


_GRADES = re.compile(r"\bperplexity\b|\bppl\b|\baccuracy\b|\bacc\b|\bf1\b|\bevaluat\w*|\bmetric\w*|\bscores?\b|"
                     r"\bbenchmark\w*", re.I)
"""A script that grades what the model does (perplexity, accuracy, a metric): its forward passes are an evaluation."""
_BACKWARD = re.compile(r"\.backward\(")
_TRAINS = re.compile(r"\.train\(\s*\)|\.train\(resume|Trainer\(|\boptimizer\.step\(")


_UNSET = object()


class _Resolver:
    """Turns an expression into a Python value where it is a literal, or a name bound to one earlier."""

    def __init__(self, tree: ast.Module, text: str):
        self.text = text
        self.bound: dict[str, list[tuple[int, ast.expr]]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.bound.setdefault(t.id, []).append((node.lineno, node.value))
                    elif isinstance(t, (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List)) and \
                            len(t.elts) == len(node.value.elts):
                        # 'batch_size, grad_accum, max_length = 4, 4, 1024': each name bound to its own value
                        for name, v in zip(t.elts, node.value.elts):
                            if isinstance(name, ast.Name):
                                self.bound.setdefault(name.id, []).append((node.lineno, v))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                self.bound.setdefault(node.target.id, []).append((node.lineno, node.value))
        for v in self.bound.values():
            v.sort(key=lambda p: p[0])

    def lookup(self, name: str, line: int) -> ast.expr | None:
        cands = self.bound.get(name, [])
        before = [n for ln, n in cands if ln <= line]
        return before[-1] if before else (cands[0][1] if cands else None)

    def value(self, node: ast.expr, depth: int = 0):
        if depth > _DEPTH:
            return self.source(node)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return [self.value(e, depth + 1) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {self.value(k, depth + 1): self.value(v, depth + 1) for k, v in zip(node.keys, node.values) if k}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, (ast.UnaryOp, ast.BoolOp, ast.BinOp, ast.Compare, ast.IfExp)):
            return self.expression(node, depth)
        if isinstance(node, ast.Name):
            bound = self.lookup(node.id, node.lineno)
            return self.value(bound, depth + 1) if bound is not None else self.source(node)
        if isinstance(node, ast.Attribute):
            field_ = self.config_field(node, depth)
            return field_ if field_ is not _UNSET else dotted(node) or self.source(node)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
                return {kw.arg: self.value(kw.value, depth + 1) for kw in node.keywords if kw.arg}
            return self.call(node, depth + 1)
        return self.source(node)

    def config_field(self, node: ast.Attribute, depth: int):
        """`model_args.dtype` where `model_args = ModelConfig(...)`: the keyword it was built with, else the config's
        known default (CONFIG_DEFAULTS); _UNSET where the name is no config object or the field is not known."""
        if not isinstance(node.value, ast.Name):
            return _UNSET
        bound = self.lookup(node.value.id, node.lineno)
        if not isinstance(bound, ast.Call):
            return _UNSET
        name, _ = call_name(bound)
        if not _CONFIG_CALL.search(name):
            return _UNSET
        for kw in bound.keywords:
            if kw.arg == node.attr:
                return self.value(kw.value, depth + 1)
        return CONFIG_DEFAULTS.get(name, {}).get(node.attr, _UNSET)

    def expression(self, node: ast.expr, depth: int):
        """`not x`, `a and b`, `2 * n`, `x if c else y`, comparisons: evaluated when every part is known; otherwise
        Depends(source): set by the script, value decided at run time (`not is_bfloat16_supported()`)."""
        try:
            if isinstance(node, ast.IfExp):
                test = self.value(node.test, depth + 1)
                if isinstance(test, (bool, int)) and not isinstance(test, Depends):
                    return self.value(node.body if test else node.orelse, depth + 1)
                return Depends(self.source(node))
            parts = [node.operand] if isinstance(node, ast.UnaryOp) else node.values if isinstance(node, ast.BoolOp) \
                else [node.left, node.right] if isinstance(node, ast.BinOp) else [node.left, *node.comparators]
            vals = [self.value(x, depth + 1) for x in parts]
            if not all(isinstance(v, (bool, int, float)) and not isinstance(v, Depends) for v in vals):
                return Depends(self.source(node))
            env = {f"_v{i}": v for i, v in enumerate(vals)}
            expr = ast.Expression(_replace_parts(node, parts))
            return eval(compile(ast.fix_missing_locations(expr), "<expr>", "eval"), {"__builtins__": {}}, env)  # noqa: S307
        except Exception:  # an expression we cannot fold stays 'set, value unknown'
            return Depends(self.source(node))

    def call(self, node: ast.Call, depth: int = 0) -> CallRef:
        name, owner = call_name(node)
        ref = CallRef(name=name, owner=owner, line=node.lineno)
        ref.args = [(self.value(a, depth), self.source(a)) for a in node.args]
        for kw in node.keywords:
            if kw.arg is not None:
                ref.kwargs[kw.arg] = (self.value(kw.value, depth), self.source(kw.value))
        return ref

    def source(self, node: ast.expr) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)


def _replace_parts(node: ast.expr, parts: list) -> ast.expr:
    """A copy of `node` whose operands are the names _v0, _v1, ... (their values already known): only operators and
    these names are evaluated, never the script's own code."""
    import copy

    new = copy.deepcopy(node)
    names = iter(ast.Name(id=f"_v{i}", ctx=ast.Load()) for i in range(len(parts)))
    if isinstance(new, ast.UnaryOp):
        new.operand = next(names)
    elif isinstance(new, ast.BoolOp):
        new.values = [next(names) for _ in new.values]
    elif isinstance(new, ast.BinOp):
        new.left, new.right = next(names), next(names)
    else:
        new.left = next(names)
        new.comparators = [next(names) for _ in new.comparators]
    return new


def dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def call_name(node: ast.Call) -> tuple[str, str]:
    """('from_pretrained', 'AutoModelForCausalLM') for AutoModelForCausalLM.from_pretrained(...)."""
    f = node.func
    if isinstance(f, ast.Name):
        return f.id, ""
    if isinstance(f, ast.Attribute):
        owner = dotted(f.value) or ""
        return f.attr, owner.rsplit(".", 1)[-1]
    return "", ""


def read_script(path: str) -> ScriptInfo:
    """Parse `path` (never executing it) and pick out the training settings."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UserError(f"--script {path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise UserError(f"--script {path}: not a Python text file") from None
    return analyse(text, str(p))


def analyse(text: str, path: str = "<script>") -> ScriptInfo:
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise UserError(f"--script {path}: not valid Python at line {e.lineno}: {e.msg}") from None
    r = _Resolver(tree, text)
    info = ScriptInfo(path=path, text=text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name, owner = call_name(node)
            if name == "from_pretrained" and MODEL_OWNER.search(owner) and info.model_call is None:
                info.model_call = r.call(node)
            elif name == "from_pretrained" and owner.split(".")[-1] == "PeftModel":
                info.calls.setdefault("PeftModel.from_pretrained", []).append(r.call(node))
            elif name in CALLS:
                info.calls.setdefault(name, []).append(r.call(node))
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                d = dotted(t) if isinstance(t, ast.Attribute) else None
                if d:
                    info.assigns[d] = (node.lineno, r.source(node.value))
                    info.assigned[d] = r.value(node.value)
    for refs in info.calls.values():
        refs.sort(key=lambda c: c.line)
    if info.model_call is None and info.first("pipeline") is not None:
        info.model_call = _pipeline_load(info.first("pipeline"))
    info.settings = _settings(info)
    return info


def _is_call(node: ast.AST, attr: str) -> bool:
    """node calls a method named attr with no argument or True ('model.eval()', 'model.train()', 'model.train(True)')."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr and \
        (not node.args or (isinstance(node.args[0], ast.Constant) and node.args[0].value is True)) and not node.keywords


def _eval_mode_left(text: str) -> str | None:
    """A training loop of the user's own (a for loop that calls .backward()) that calls a function of the script which
    switches the model to eval mode ('model.eval()'), while nothing in the loop or that function switches it back
    (.train()): every step after the first evaluation trains in eval mode. The line of that .eval(), or None."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    evals = {}
    for f in ast.walk(tree):
        if isinstance(f, ast.FunctionDef):
            inner = list(ast.walk(f))
            e = next((n for n in inner if _is_call(n, "eval")), None)
            if e is not None and not any(_is_call(n, "train") for n in inner):
                evals[f.name] = e
    for loop in ast.walk(tree):
        if not isinstance(loop, (ast.For, ast.While)):
            continue
        inner = list(ast.walk(loop))
        if not any(_is_call(n, "backward") or (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and
                                               n.func.attr == "backward") for n in inner):
            continue
        if any(_is_call(n, "train") for n in inner):
            continue
        for n in inner:
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in evals:
                e = evals[n.func.id]
                return f"line {e.lineno}: {n.func.id}() calls model.eval() and the training loop never calls .train()"
    return None


_PIPELINE_LOAD_KEYS = ("dtype", "torch_dtype", "device_map", "trust_remote_code", "revision")
"""The keywords pipeline() hands to the model's from_pretrained itself; everything else for the load goes in
model_kwargs (transformers' pipeline factory): a quantization_config given to pipeline() beside them never reaches the
load."""


def _pipeline_load(pipe: CallRef) -> CallRef | None:
    """pipeline('text-generation', model='id', dtype=..., model_kwargs={...}) read as the from_pretrained it runs: the
    model named, the load keywords pipeline() passes on, and model_kwargs. None where the model is no name."""
    model = pipe.value("model", pipe.args[1][0] if len(pipe.args) > 1 else None)
    if not isinstance(model, str):
        return None
    load = CallRef(name="from_pretrained", owner="pipeline", line=pipe.line, args=[(model, repr(model))])
    load.kwargs = {k: v for k, v in pipe.kwargs.items() if k in _PIPELINE_LOAD_KEYS}
    extra = pipe.value("model_kwargs")
    if isinstance(extra, dict):
        load.kwargs.update({k: (v, repr(v)) for k, v in extra.items()})
    return load


ARGS_CALLS = ("TrainingArguments", "Seq2SeqTrainingArguments", "SFTConfig", "DPOConfig", "GRPOConfig", "ORPOConfig",
               "KTOConfig", "RewardConfig", "PPOConfig", "OnlineDPOConfig")
_FLAG_KEYS = ("fp16", "bf16", "gradient_checkpointing", "packing", "use_liger_kernel", "prediction_loss_only",
              "use_vllm", "ds3_gather_for_generation")


def _commented_flags(text: str) -> dict:
    """`# bf16=True` and the like: a precision flag the user commented out (the run is fp32 without it)."""
    out = {}
    for m in re.finditer(r"^[ \t]*#[ \t]*(bf16|fp16)[ \t]*=[ \t]*(True|[^\n,]+)", text, re.M):
        out.setdefault(m.group(1), m.group(0).strip())
    return out


_TRAIN_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "optim",
               "fp16", "bf16", "max_length", "max_seq_length", "packing", "eval_accumulation_steps",
               "prediction_loss_only", "use_liger_kernel", "eval_strategy", "evaluation_strategy", "do_eval",
               "dataset_text_field", "per_device_eval_batch_size", "per_gpu_train_batch_size", "use_vllm",
               "vllm_gpu_memory_utilization", "num_generations", "max_completion_length", "ds3_gather_for_generation",
               "predict_with_generate", "deepspeed", "optim", "precompute_ref_log_probs", "precompute_ref_batch_size")


_FREEZES = re.compile(r"requires_grad\s*=\s*False|requires_grad_\(\s*False|FastLanguageModel|FastModel|unsloth", re.I)
"""Code that trains only part of the model without naming an adapter: weights frozen by hand, or Unsloth's loaders
(which make a LoRA through their own get_peft_model)."""


_ADAPTER_CONFIG = re.compile(r"\b(?:LoraConfig|AdaLoraConfig|LoHaConfig|LoKrConfig|IA3Config|BOFTConfig|OFTConfig|"
                             r"VeraConfig|PrefixTuningConfig|PromptTuningConfig|PromptEncoderConfig)\(")
_APPLIES_ADAPTER = re.compile(r"\bpeft_config\s*=|get_peft_model\(|\.add_adapter\(|\.load_adapter\(|\bPeftModel\w*|"
                              r"AutoPeftModel\w*|inject_adapter\w*|\bFastLanguageModel\b|\bFastModel\b|"
                              r"use_peft\s*=\s*True|get_peft_config\(")
"""PEFT's adapter configs, and the calls that put an adapter on a model (or hand its config to a trainer)."""


def _adapter_never_applied(info: ScriptInfo) -> str | None:
    """An adapter config the script builds and never applies ('lora_config = LoraConfig(...)' with no peft_config= on
    the trainer, no get_peft_model): the trainer then trains every weight. The config's line, or None."""
    m = _ADAPTER_CONFIG.search(info.text)
    if m is None or _APPLIES_ADAPTER.search(info.text):
        return None
    if not any(info.calls.get(n) for n in TRAINER_CALLS) and not info.backward_by_hand:
        return None  # no training here to apply it to (an excerpt)
    return f"{m.group(0)}...) at line {info.text.count(chr(10), 0, m.start()) + 1} is never applied"


def _trains_every_weight(info: ScriptInfo) -> bool:
    """A whole training script that makes no adapter: it builds the model (from_pretrained, or a TRL trainer given a
    model name), hands it to a trainer, and nowhere names PEFT, LoRA or any other adapter, nor freezes weights. Then
    every weight is trained (transformers' Trainer and TRL's trainers do that unless given a peft_config), and its
    gradients and optimizer state are 16 bytes per parameter, not a LoRA's few MB. An excerpt that shows only the
    trainer's arguments says nothing about the method."""
    trainer = next((r for n in TRAINER_CALLS for r in info.calls.get(n, [])), None)
    if trainer is None or "peft_config" in trainer.kwargs:
        return False
    builds = info.model_call is not None or isinstance(trainer.value("model"), str)
    # 4/8-bit weights cannot be trained directly (transformers refuses): such a script means an adapter, or fails
    quantized = re.search(r"load_in_[48]bit|BitsAndBytesConfig|quantization_config", info.text)
    # (an adapter config built and never applied names LoRA, yet trains every weight)
    return builds and not quantized and (not ADAPTER_WORDS.search(info.text) or _adapter_never_applied(info) is not None) \
        and not _FREEZES.search(info.text)


_UNFREEZES_ALL = re.compile(r"^[ \t]*for\s+(?:\w+\s*,\s*)?(\w+)\s+in\s+[\w.]+\.(?:named_)?parameters\(\)\s*:[ \t]*\n"
                            r"[ \t]+\1\.requires_grad(?:\s*=\s*True|_\(\s*(?:True)?\s*\))|"
                            r"^[ \t]*[\w.]+\.requires_grad_\(\s*(?:True)?\s*\)", re.M)
"""A loop that sets every parameter to train, its first line the unconditional `p.requires_grad = True` (a forum fix
for 'element 0 of tensors does not require grad' or a leftover), or the model's own requires_grad_(True)."""


_MATH_SDPA = re.compile(r"sdpa_kernel\(\s*(?:\[\s*)?(?:torch\.nn\.attention\.)?SDPBackend\.MATH\s*\]?\s*\)|"
                        r"sdp_kernel\([^)]*enable_flash\s*=\s*False[^)]*enable_mem_efficient\s*=\s*False[^)]*\)")
"""A context that leaves sdpa only its math kernel (torch.nn.attention.sdpa_kernel(SDPBackend.MATH), the older
torch.backends.cuda.sdp_kernel with flash and memory-efficient off): often for bit-for-bit repeatable runs."""


def _unfreezes_after_adapter(text: str) -> str | None:
    """Every parameter set to train after the adapter is applied (get_peft_model, an Unsloth loader's adapter): the
    adapter then trains beside every base weight, a full fine-tune's gradients and optimizer state. Its line, or
    None (a loop before the adapter is undone by get_peft_model, which freezes the base)."""
    applied = _APPLIES_ADAPTER.search(text)
    for m in _UNFREEZES_ALL.finditer(text):
        if applied is not None and m.start() > applied.start() and "input_require" not in m.group(0):
            return f"line {text.count(chr(10), 0, m.start()) + 1}: {' '.join(m.group(0).split())}"
    return None


def _trl_loading(info: ScriptInfo, s: dict) -> None:
    """How a TRL trainer loads a model it is given by name: the config's model_init_kwargs (dtype, attention), and
    TRL's own default where they say nothing: float32 weights ('If not explicitly set, `dtype` defaults to
    `'float32'`', trl/trainer/utils.py create_model_from_path, TRL 1.x), whatever bf16=True does to the compute."""
    kw = next((r.value("model_init_kwargs") for n in ARGS_CALLS for r in info.calls.get(n, [])
               if isinstance(r.value("model_init_kwargs"), dict)), None)
    if kw is None:  # set on the config after it was built: 'training_args.model_init_kwargs = dict(dtype=...)'
        kw = next((v for k, v in info.assigned.items() if k.endswith(".model_init_kwargs") and isinstance(v, dict)), {})
    for k in ("dtype", "torch_dtype"):
        if k in kw:
            s.setdefault("torch_dtype", str(kw[k]))
    if "attn_implementation" in kw:
        s.setdefault("attn_implementation", kw["attn_implementation"])
    if "torch_dtype" not in s:
        s["torch_dtype"] = "float32"
        s["trl_fp32_default"] = True


_KEPT_LOGITS = re.compile(r"^[ \t]*[\w.\[\]]+\.(?:append|extend)\([^\n]*\b(?:logits|last_hidden_state|hidden_states|"
                          r"pooler_output|get_embedding\(\))[^\n]*\)[ \t]*$", re.M)
"""A loop of the user's own that keeps each batch's logits (or hidden states, or embeddings) in a list
('all_logits.append(out.logits[:, :-1])'): they stay on the GPU, batch after batch, until the loop ends."""
_STORED_IN = re.compile(r"^[ \t]*(\w+)\[[^\]\n]+\]\s*=\s*[^\n]*\b(?:logits|last_hidden_state|hidden_states|"
                        r"pooler_output|get_embedding\(\)|embed\w*\(|encode\()[^\n]*$", re.M)
"""A model output written into a tensor row by row inside the user's loop ('X[i] = sentence.get_embedding()')."""
_NO_GRAPH = re.compile(r"torch\.no_grad|inference_mode|\.detach\(|requires_grad_?\(\s*False|fine_tune\s*=\s*False")
"""What keeps autograd from recording the outputs (no graph is kept with them)."""


_KEPT_CACHE = re.compile(r"^[ \t]+(?:\w+\[[^\]\n]+\]\s*=|\w+\.append\()[^\n]*\bpast_key_values\b(?![^\n]*=\s*None)",
                         re.M)
"""A generation's KV cache stored per input inside a loop ('sessions[i] = {"cache": out.past_key_values}'): every
input's cache stays on the GPU."""
_LOADS = re.compile(r"\b(\w+)\.from_pretrained\(\s*([\w.\"'/-]+)|"
                    r"\bpipeline\((?:[^()]|\([^()]*\))*?\bmodel\s*=\s*([\w.\"'/-]+)")
"""A model loaded by name: Model.from_pretrained('id') or (var), pipeline(..., model='id' or var); not a tokenizer,
processor or config of the same id, nor an adapter put on a loaded model (PeftModel.from_pretrained(model, ...))."""


_LOOP = re.compile(r"^([ \t]*)for [^\n]+:[ \t]*\n((?:\1[ \t]+[^\n]*\n|[ \t]*\n)+)", re.M)
"""A for-loop and its indented body."""
_EVAL_DEF = re.compile(r"^([ \t]*)def \w*(?:eval|valid)\w*\([^\n]*\):[ \t]*\n((?:\1[ \t]+[^\n]*\n|[ \t]*\n)+)",
                       re.M | re.I)
"""The user's own evaluation function and its body ('def evaluate():')."""


def _eval_keeps_graph(text: str) -> str | None:
    """An evaluation function of the user's that runs the model with autograd on (no torch.no_grad, inference_mode or
    decorator): every activation is kept for a backward that never comes. The evidence, or None."""
    for m in _EVAL_DEF.finditer(text + "\n"):
        body = m.group(2)
        head = text[max(0, m.start() - 80):m.start()]
        forward = re.search(r"\bmodel\s*\(|\boutputs?\s*=\s*\w+\(\*\*", body)
        if forward and not _NO_GRAPH.search(body) and not re.search(r"no_grad|inference_mode", head):
            return (f"line {text.count(chr(10), 0, m.start()) + 1}: the evaluation function runs the model without "
                    f"torch.no_grad()")
    return None


def _reloaded_in_loop(text: str) -> str | None:
    """A model loaded inside a loop with nothing freeing the previous iteration's: two copies at the second pass."""
    for m in _LOOP.finditer(text + "\n"):
        body = m.group(2)
        load = re.search(r"^[ \t]*(\w+)\s*=\s*\w*(?:Model|For\w+)\w*\.from_pretrained\(", body, re.M)
        if load and not re.search(rf"\bdel\b[^\n]*\b{re.escape(load.group(1))}\b", body):
            line = text.count("\n", 0, m.start(2) + load.start()) + 1
            return f"line {line} loads '{load.group(1)}' inside a loop, and nothing frees the previous one"
    return None


def _loaded_twice(text: str) -> str | None:
    """The same model id (or the variable holding it) loaded by two calls, or loaded again in every pass of a loop
    without the previous copy being freed: two copies of its weights."""
    again = _reloaded_in_loop(text)
    if again:
        return again
    seen: dict[str, int] = {}
    for m in _LOADS.finditer(text):
        if m.group(1) and re.search(r"Tokenizer|Processor|Config|Extractor|Peft|Adapter", m.group(1)):
            continue
        name = (m.group(2) or m.group(3)).strip("\"'")
        if not name or name in ("model", "self", "cls") or "." in name and not ("/" in name or "-" in name):
            continue
        line = text.count("\n", 0, m.start()) + 1
        if name in seen:
            return f"lines {seen[name]} and {line} both load '{name}'"
        seen[name] = line
    return None


def _kept_outputs(text: str) -> re.Match | None:
    """Outputs kept on the GPU across the inputs of a loop: appended to a list, or, with their autograd history,
    written into a tensor made on the GPU (every assignment records the output's whole graph in the tensor's
    history, so each input's activations stay alive until the loop ends)."""
    kept = _KEPT_LOGITS.search(text)
    if kept and not _MOVED_OFF.search(kept.group(0)):
        return kept
    for m in _STORED_IN.finditer(text):
        on_gpu = re.search(rf"^[ \t]*{re.escape(m.group(1))}\s*=[^\n]*(?:\.cuda\(|\.to\([^)\n]*(?:cuda|device)|"
                           rf"device\s*=\s*[^,)\n]*(?:cuda|device))", text, re.M)
        if on_gpu and not _MOVED_OFF.search(m.group(0)) and not _NO_GRAPH.search(text):
            return m
    return None
_MOVED_OFF = re.compile(r"\.(?:cpu|item|tolist|numpy|argmax)\(|\.to\([\"']cpu")
"""What keeps only a small part, or keeps it off the GPU: moved to the CPU, a number, the argmax's token ids."""


_TRUNCATES_TO_MODEL_MAX = re.compile(r"\b\w*tok\w*\((?:[^()\n]|\([^()\n]*\))*\btruncation\s*=\s*True(?:[^()\n]|"
                                     r"\([^()\n]*\))*\)", re.I)
"""A tokenizer call that truncates ('tokenizer(texts, truncation=True, ...)'): with no max_length of its own."""
_CAP_IS_MODEL_MAX = re.compile(r"\b(?:max_(?:seq_)?len(?:gth)?|max_seq_length|cutoff_len|seq_len|block_size)\s*=\s*"
                               r"(?:[\w.]+\.)?(?:max_position_embeddings|model_max_length|n_positions|max_seq_len)\b")
"""A length cap set to the model's own maximum ('max_length = model.config.max_position_embeddings'): the whole context
(32k to 128k tokens today), which no ordinary sample reaches, so it cuts nothing and a batch is as long as its longest
sample."""
_PADS_UNCUT = re.compile(r"\b\w*tok\w*\((?:[^()\n]|\([^()\n]*\))*\bpadding\s*=\s*(?:True|[\"']longest[\"'])"
                         r"(?:[^()\n]|\([^()\n]*\))*\)")
"""A tokenizer call padding a batch to its longest text ('tokenizer(batch, padding=True, return_tensors="pt")'):
without truncation it cuts nothing, so one long text makes every row of its batch that long."""
_FIELD_UNCUT = re.compile(r"\b\w*tok\w*\(\s*(?:example|examples|sample|samples|ex|row|item|record|rec|conv|"
                          r"datum)\[(?:[^()\n]|\([^()\n]*\))*\)\s*(?:\[\s*[\"']input_ids[\"']\s*\]|\.input_ids)")
"""A field of each dataset sample tokenized and its input_ids taken ('tokenizer(example["chosen"] + eos)["input_ids"]'):
with no truncation or max_length in the call, that part of a sample is kept whole, however long."""
_SKIPS_PREPARE = re.compile(r"[\"']?skip_prepare_dataset[\"']?\s*[:=]\s*True")
"""TRL's dataset_kwargs={'skip_prepare_dataset': True}: the trainer takes the dataset as given (tokenized by the user),
and the truncation to max_length that its preparation does is skipped with it."""
_CHAT_UNCUT = re.compile(r"\bapply_chat_template\((?:[^()]|\([^()]*\))*\btokenize\s*=\s*True(?:[^()]|\([^()]*\))*\)")
"""A chat template applied and tokenized in one call: it truncates nothing unless given max_length/truncation."""
_PADS_TO_MAX = re.compile(r"padding\s*=\s*[\"']max_length[\"']|pad_to_max_length\s*=\s*True")
"""Every sample padded to max_length (the tokenizer call, or the old flag): each row of every batch is that long,
whatever the texts' own lengths, where dynamic padding pads to the batch's longest."""
_LISTED_LOSS = re.compile(r"^[ \t]*(\w+)\.append\(([^\n]*\bloss\b[^\n]*)\)\s*$", re.M)
"""Micro-batches' losses appended to a list ('losses.append(outputs.loss)'), reduced later into one tensor."""
_SUMMED_LOSS = re.compile(r"^[ \t]*(\w+)\s*(?:\+=|=\s*\1\s*\+)\s*([^\n]*\bloss\b[^\n]*)$", re.M)
"""Micro-batches' losses summed into one tensor ('total_loss = total_loss + loss / 16') that a single backward then
runs through: every micro-batch's graph (activations, logits) stays alive until it, so accumulating this way saves
nothing (the backward per micro-batch frees each one)."""


_TOKENIZED_LIST = re.compile(r"^(\w+)\s*=\s*\w*(?:tok\w*|processor)\(\s*(\w+)\s*,[^\n]*$", re.M | re.I)
"""A tokenizer call at the top level of the script over a name ('enc = tokenizer(texts, padding=True, ...)')."""


_VOCAB_NAMES = r"embed_tokens|lm_head|wte|embed_in|embed_out|word_embeddings|tok_embeddings|output"
_VOCAB_MODULES = re.compile(rf"modules_to_save\s*=\s*\[[^\]\n]*[\"'](?:{_VOCAB_NAMES})[\"'][^\]\n]*\]")
"""PEFT's modules_to_save naming the embeddings or the LM head: each is trained whole (a full copy, its gradients and
Adam state), vocabulary x hidden parameters apiece."""


def _in_loop(lines: list[str], i: int) -> bool:
    """Line i is inside a for or while block (an enclosing line with less indentation opens one)."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    for line in reversed(lines[:i]):
        if not line.strip():
            continue
        ind = len(line) - len(line.lstrip())
        if ind < indent:
            if re.match(r"\s*(?:async\s+)?(?:for|while)\b", line):
                return True
            indent = ind
            if ind == 0:
                return False
    return False


def _whole_set_at_once(text: str) -> str | None:
    """Every input of a list the script built sent through the model in one call: the list tokenized at once
    ('enc = tokenizer(texts, padding=True, ...)', where `texts` is appended to in a loop) and the model called on all of
    it outside any loop ('model(**enc)', 'model.generate(**enc)'): the batch is the whole dataset. The line, or None."""
    lines = text.splitlines()
    for m in _TOKENIZED_LIST.finditer(text):
        enc, names = m.group(1), m.group(2)
        if not re.search(rf"^[ \t]*{names}\.(?:append|extend)\(|^{names}\s*=\s*\[[^\]\n]*\bfor\b", text, re.M):
            continue  # not a list the script fills with every input
        for i, line in enumerate(lines):
            if re.search(rf"\b\w+(?:\.generate)?\(\s*\*\*{enc}\b", line) and "tok" not in line.split("(")[0] \
                    and not _in_loop(lines, i):
                return f"line {i + 1}: {line.strip()} (every text of `{names}` tokenized at once into `{enc}`)"
    return None


def _settings(info: ScriptInfo) -> dict:
    s: dict = {}
    m = info.model_call
    if m is not None:
        mid = m.args[0][0] if m.args else m.value("pretrained_model_name_or_path", m.value("model_name"))
        if isinstance(mid, str):
            s["model"] = mid
        for k in ("load_in_4bit", "load_in_8bit", "attn_implementation", "device_map", "use_cache"):
            if k in m.kwargs:
                s[k] = m.value(k)
        for k in ("torch_dtype", "dtype"):
            if k in m.kwargs:
                s["torch_dtype"] = m.value(k)
        if "max_seq_length" in m.kwargs:  # Unsloth's loader takes the length
            s["max_length"] = m.value("max_seq_length")
        q = m.value("quantization_config")
        # a BitsAndBytesConfig the script writes but never passes to from_pretrained quantizes nothing: the weights
        # load in the dtype given (a name the resolver cannot follow still counts, where quantization_config is passed)
        bnb = q if isinstance(q, CallRef) else info.first("BitsAndBytesConfig") if "quantization_config" in m.kwargs \
            else None
        if bnb is not None:
            for k in ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant"):
                if k in bnb.kwargs:
                    s[k] = bnb.value(k)
            if "bnb_4bit_compute_dtype" in bnb.kwargs:
                s["bnb_4bit_compute_dtype"] = bnb.value("bnb_4bit_compute_dtype")
    lora = info.first("LoraConfig") or info.first("get_peft_model")
    if lora is not None:
        for k in ("r", "target_modules", "lora_dropout"):
            if k in lora.kwargs:
                s[k] = lora.value(k)
        if lora.value("use_gradient_checkpointing") not in (None, False):
            s["gradient_checkpointing"] = True
    peft = info.first("get_peft_model")
    if peft is not None and peft.owner.startswith("Fast") and "use_gradient_checkpointing" not in peft.kwargs:
        s.setdefault("gradient_checkpointing", True)  # Unsloth's get_peft_model defaults to "unsloth" (on)
    for name in ARGS_CALLS + ("SFTTrainer", "Trainer"):
        for ref in info.calls.get(name, []):
            for k in _TRAIN_KEYS:
                if k not in ref.kwargs:
                    continue
                v = ref.value(k)
                if k in _FLAG_KEYS and not isinstance(v, bool) and v is not None:
                    v = v if isinstance(v, Depends) else Depends(ref.src(k))  # set from a name or a call
                if not isinstance(v, CallRef):
                    s["max_length" if k == "max_seq_length" else k] = v
    for k, line in _commented_flags(info.text).items():
        s.setdefault(f"commented_{k}", line)
    pk = info.first("prepare_model_for_kbit_training")
    if pk is not None and pk.value("use_gradient_checkpointing", True) is not False:
        s.setdefault("gradient_checkpointing", True)  # PEFT enables it by default
    if info.first("gradient_checkpointing_enable") is not None:
        s["gradient_checkpointing"] = True
    for name in TRAINER_CALLS:  # TRL's trainers load the model themselves from a name: SFTTrainer(model="Qwen/...")
        for ref in info.calls.get(name, []):
            mid = ref.value("model", ref.args[0][0] if ref.args else None)
            if isinstance(mid, str) and "model" not in s:
                s["model"] = mid
            if isinstance(mid, str) and name not in ("Trainer", "Seq2SeqTrainer") and info.model_call is None:
                _trl_loading(info, s)
    math = _MATH_SDPA.search(info.text)
    if math:
        # torch's math kernel is the only one allowed: sdpa then computes attention the eager way (the scores matrix
        # seq x seq per head, upcast to fp32), whatever attn_implementation the model was loaded with
        s["attn_implementation"] = "eager"
        s["sdpa_math_only"] = f"line {info.text.count(chr(10), 0, math.start()) + 1}: {' '.join(math.group(0).split())}"
    unfrozen = _unfreezes_after_adapter(info.text)
    if unfrozen and not info.text.count("load_in_4bit") and not info.text.count("load_in_8bit"):
        # (a quantized base cannot train: transformers refuses, a different error than memory)
        s["finetuning_type"] = "full"
        s["unfreezes_all"] = unfrozen
    if _trains_every_weight(info):
        s.setdefault("finetuning_type", "full")
        unused = _adapter_never_applied(info)
        if unused:
            s["adapter_unused"] = unused
    uncut = _TRUNCATES_TO_MODEL_MAX.search(info.text)
    if uncut and "max_length" not in s and "max_length" not in uncut.group(0):
        # truncation=True with no max_length cuts at the tokenizer's model_max_length: no cap where the tokenizer
        # names no limit (1e30), the model's whole context otherwise
        s["max_length"] = "tokenizer.model_max_length (truncation=True without max_length)"
    # a LoRA adapter loaded for use: AutoPeftModelForCausalLM.from_pretrained(adapter) loads its base itself,
    # PeftModel.from_pretrained(base, adapter) puts it on a base loaded before
    peft = info.calls.get("PeftModel.from_pretrained", [])
    if m is not None and m.owner.split(".")[-1].startswith("AutoPeftModel") and isinstance(s.get("model"), str):
        s["adapter_loaded"] = s["model"]
    elif peft:
        a = peft[0].args[1][0] if len(peft[0].args) > 1 else peft[0].value("model_id")
        if isinstance(a, str):
            s["adapter_loaded"] = a
    padded = _PADS_UNCUT.search(info.text)
    if padded and "max_length" not in s and not re.search(r"\btruncation\s*=|\bmax_length\s*=", padded.group(0)) and \
            not re.search(r"\btruncation\s*=\s*True|\bmax_length\s*=", info.text):
        # the script's tensors come from a call that pads and never truncates (nothing else in the script cuts)
        s["max_length"] = (f"None (line {info.text.count(chr(10), 0, padded.start()) + 1}: padding without "
                           f"truncation, the model's whole context)")
    field = next((f for f in _FIELD_UNCUT.finditer(info.text)
                  if not re.search(r"\btruncation\s*=\s*True|\bmax_length\s*=", f.group(0))), None)
    if field and "max_length" not in s and any(info.calls.get(n) for n in TRAINER_CALLS):
        # a training sample built from a field tokenized whole: a cut elsewhere (the prompt's) leaves this part uncut
        s["max_length"] = (f"None (line {info.text.count(chr(10), 0, field.start()) + 1}: "
                           f"{' '.join(field.group(0).split())} tokenizes without truncation)")
    skipped = _SKIPS_PREPARE.search(info.text)
    if skipped and info.calls.get("SFTTrainer"):
        # TRL truncates to max_length while it prepares the dataset; told to skip that, it takes the rows as they
        # come, so max_length cuts nothing and a batch is as long as its longest row
        s["max_length"] = (f"None (line {info.text.count(chr(10), 0, skipped.start()) + 1}: skip_prepare_dataset=True, "
                           f"so TRL's truncation to max_length never runs)")
    at_model_max = _CAP_IS_MODEL_MAX.search(info.text)
    if at_model_max and not isinstance(s.get("max_length"), int):
        rhs = at_model_max.group(0).split("=", 1)[1].strip()
        s["max_length"] = f"{rhs} (line {info.text.count(chr(10), 0, at_model_max.start()) + 1}: the model's whole context)"
    loader = info.first("DataLoader")
    if "per_device_train_batch_size" not in s and loader is not None and isinstance(loader.value("batch_size"), int) \
            and info.backward_by_hand:
        # a loop of the user's own: the DataLoader's batch is the micro-batch (gradient accumulation, where there is
        # any, only decides how many of them one optimizer step sums)
        s["per_device_train_batch_size"] = loader.value("batch_size")
    left_in_eval = _eval_mode_left(info.text)
    if left_in_eval and s.get("gradient_checkpointing") is True:
        # transformers checkpoints only while the model is in training mode: an evaluation that switches it to eval
        # mode, called from the training loop with nothing switching it back, trains every step after it without
        # checkpointing (and without dropout)
        s["gradient_checkpointing"] = False
        s["eval_mode_left"] = left_in_eval
    padded = _PADS_TO_MAX.search(info.text)
    if padded:
        s["pads_to_max_length"] = f"line {info.text.count(chr(10), 0, padded.start()) + 1}: {padded.group(0).strip()}"
    for m in _LISTED_LOSS.finditer(info.text):
        # the losses kept in a list and reduced into one tensor that a single backward runs through (torch.stack(
        # losses).mean().backward()): the same as summing them, every micro-batch's graph stays alive until then
        if not _MOVED_OFF.search(m.group(2)) and not re.search(r"\.detach\(", m.group(2)) and \
                re.search(rf"(?:torch\.(?:stack|cat)|\bsum)\(\s*{re.escape(m.group(1))}\b", info.text) and \
                ".backward(" in info.text:
            s["sums_losses"] = f"line {info.text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}"
            break
    for m in _SUMMED_LOSS.finditer(info.text):
        if re.search(rf"\b{re.escape(m.group(1))}\.backward\(", info.text) and not _MOVED_OFF.search(m.group(2)) \
                and not re.search(r"\.detach\(", m.group(2)):
            s["sums_losses"] = f"line {info.text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}"
            break
    cache = _KEPT_CACHE.search(info.text)
    if cache:
        s["keeps_cache"] = f"line {info.text.count(chr(10), 0, cache.start()) + 1}: {cache.group(0).strip()}"
    twice = _loaded_twice(info.text)
    if twice:
        s["loads_twice"] = twice
    graph = _eval_keeps_graph(info.text)
    if graph:
        s["eval_keeps_graph"] = graph
    chat = _CHAT_UNCUT.search(info.text)
    if chat and "max_length" not in s and not re.search(r"\btruncation\s*=\s*True|\bmax_length\s*=", info.text):
        # a conversation tokenized whole by its chat template: nothing cuts a long one
        s["max_length"] = (f"None (line {info.text.count(chr(10), 0, chat.start()) + 1}: apply_chat_template "
                           f"tokenizes without truncation, the model's whole context)")
    vocab = _VOCAB_MODULES.search(info.text)
    if vocab:  # the vocabulary-sized modules it names, each trained whole
        s["trains_vocab_modules"] = re.findall(rf"[\"']({_VOCAB_NAMES})[\"']", vocab.group(0))
    whole = _whole_set_at_once(info.text)
    if whole:
        s["whole_set_forward"] = whole
    kept = _kept_outputs(info.text)
    if kept:
        s["keeps_logits"] = f"line {info.text.count(chr(10), 0, kept.start()) + 1}: {kept.group(0).strip()}"
    if info.model_call is not None and _LABEL_HEAD.search(info.model_call.owner):
        # a classification / span head: its logits are a few labels per sample (or two per token), not the vocabulary
        s["label_head"] = info.model_call.owner.split(".")[-1]
    for ref in info.calls.get("SFTTrainer", []) + info.calls.get("Trainer", []):
        s["has_eval"] = s.get("has_eval") or "eval_dataset" in ref.kwargs
        s["compute_metrics"] = s.get("compute_metrics") or "compute_metrics" in ref.kwargs
        s["preprocess_logits"] = s.get("preprocess_logits") or "preprocess_logits_for_metrics" in ref.kwargs
    return {k: v for k, v in s.items() if not isinstance(v, CallRef)}


def analyse_lenient(text: str) -> ScriptInfo:
    """A script as posted in a thread: often an excerpt cut mid-call. Parsed whole if it parses (dedented, or with
    the brackets it left open closed); otherwise its settings are read line by line."""
    import textwrap

    base = textwrap.dedent(text)
    for tail in ("", ")", "))", ")))", "\n)"):
        try:
            return analyse(base + tail, "<posted script>")
        except UserError:
            continue
    from qlorafit.doctor.foreign import read_settings

    info = ScriptInfo(path="<posted script>", text=text)
    info.settings = read_settings(text)
    for k, line in _commented_flags(text).items():
        info.settings.setdefault(f"commented_{k}", line)
    for name in CALLS:  # the calls it makes, by name, so rules can still see them
        for m in re.finditer(rf"\b{name}\(", text):
            info.calls.setdefault(name, []).append(CallRef(name=name, owner="", line=text[:m.start()].count("\n") + 1))
    return info
