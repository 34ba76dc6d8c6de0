"""Fixes sized by the estimator: each is a lever of qlorafit.core.levers, re-estimated to get the GiB it saves.

Ranked by GiB saved / the lever's weight, the primary cause's own fixes first. The corrected configuration applies
them one by one until the estimate fits the budget (or only the first, when no budget is known), then renders them as
a patch of the script's arguments or a qlorafit YAML.
"""

from dataclasses import dataclass, field, replace

from qlorafit.core import options as O
from qlorafit.core.levers import LEVERS, Lever
from qlorafit.core.setup import Setup, apply_setup, knobs
from qlorafit.doctor.case import Case
from qlorafit.doctor.rules import Cause

HEADROOM = 0.95
"""A corrected setup should leave 5% of the card free: the estimator's error and other tenants of the GPU."""


@dataclass
class Fix:
    id: str
    title: str
    cost: str
    saves_bytes: int | None = None
    basis: str = ""
    peak_after: int | None = None
    fits_after: bool | None = None
    changes: dict = field(default_factory=dict)
    patch: list = field(default_factory=list)
    score: float = 0.0
    saves_range: tuple | None = None
    """(low, high) bytes when the settings were assumed: the saving across plausible batches and lengths, shown
    instead of one figure (which would be as precise as the guess behind it)."""


def estimator_fixes(c: Case) -> list[Fix]:
    """Every applicable fix, re-estimated alone against the user's setup."""
    if c.est is None:
        return []
    out = []
    for spec in LEVERS:
        if not spec.applies(c.setup) or (spec.adapter_only and c.full_fine_tune):
            continue  # a full fine-tune trains every weight: no 4-bit base, no LoRA setting, no frozen head
        chg = spec.change(c.setup)
        after = c.estimate_with(replace(c.setup, **chg))
        saved = c.est.peak_bytes - after.peak_bytes
        if saved <= 0:
            continue
        fix = Fix(spec.id, spec.title, spec.cost, saved, "estimator", after.peak_bytes,
                  after.peak_bytes <= c.budget_bytes if c.budget_bytes else None, chg, score=saved / 2**30 / spec.weight)
        if not c.from_user:
            fix.saves_range = _saving_range(c, spec)
            fix.fits_after = fix.peak_after = None  # 'fits' and a peak would rest on the assumed batch and length
            if fix.saves_range:  # rank by what it saves even at the small corner, not by the guess
                fix.score = fix.saves_range[0] / 2**30 / spec.weight
        out.append(fix)
    return out


ASSUMED_STEPS = ((1, 512), (1, 4096), (8, 512), (8, 4096))
"""(micro-batch, tokens) corners a saving is sized at when the input did not say: the range a report shows."""


def _saving_range(c: Case, spec: Lever) -> tuple | None:
    corners = [replace(c.setup, batch_size=bs, seq_len=seq) for bs, seq in ASSUMED_STEPS]
    got = [c.estimate_with(s).peak_bytes - c.estimate_with(replace(s, **spec.change(s))).peak_bytes
           for s in corners if spec.applies(s)]
    return (max(0, min(got)), max(got)) if got else None


def ranked(c: Case, primary: Cause | None) -> list[Fix]:
    """The primary cause's actions, then its estimator fixes by score, then every other fix by score."""
    fixes = estimator_fixes(c)
    own = set(primary.fix_ids) if primary else set()
    fixes.sort(key=lambda f: (f.id not in own, -f.score))
    head = [Fix(a.id or f"action:{i}", a.title, a.cost, a.saves_bytes, a.basis, patch=list(a.patch))
            for i, a in enumerate(primary.actions)] if primary else []
    return head + fixes


def corrected_setup(c: Case, fixes: list[Fix], force_one: bool) -> tuple[Setup | None, list[Fix]]:
    """Apply estimator fixes in ranked order until the estimate fits the budget with headroom.

    With no budget, or when the estimate already fits but the run did fail (`force_one`), only the first applies.
    Halving fixes (batch, length) may apply again in a later round.
    """
    if c.est is None:
        return None, []
    s, used = c.setup, []
    target = int(c.budget_bytes * HEADROOM) if c.budget_bytes else None
    for _ in range(3):
        for f in fixes:
            spec = next((sp for sp in LEVERS if sp.id == f.id), None)
            fits = target is not None and c.estimate_with(s).peak_bytes <= target
            if spec is None or (fits and not (force_one and not used)) or (target is None and used):
                continue
            if spec.applies(s):
                s = replace(s, **spec.change(s))
                used.append(f)
    return s, used


# --- rendering the corrected setup --------------------------------------------------------------------------------

def _args_name(c: Case) -> str:
    sc = c.inputs.script
    return next((n for n in ("SFTConfig", "TrainingArguments", "Seq2SeqTrainingArguments") if sc and sc.first(n)),
                "TrainingArguments")


def script_patch(c: Case, new: Setup) -> list[str]:
    """'- old / + new' lines for the script's arguments that the corrected setup changes."""
    old, s, args = c.setup, c.settings, _args_name(c)

    def was(key, shown=None):
        return f"{key}={s[key]!r}" if key in s else f"{key} not set (default {shown})"

    lines: list[str] = []
    if new.quant != old.quant:
        lines += [f"- from_pretrained: {was('load_in_4bit', 'no quantization') if old.quant == 'none' else 'load_in_8bit=True'}",
                  '+ from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='
                  '"nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16))']
    elif new.double_quant != old.double_quant:
        lines += ["- BitsAndBytesConfig(bnb_4bit_use_double_quant=False)", "+ BitsAndBytesConfig(bnb_4bit_use_double_quant=True)"]
    if new.loss_impl != old.loss_impl:
        lines += [f"- {args}: use_liger_kernel not set", f"+ {args}(use_liger_kernel=True)  # pip install liger-kernel"]
    if new.attn_impl != old.attn_impl:
        lines += [f"- from_pretrained(attn_implementation={old.attn_impl!r})", f"+ from_pretrained(attn_implementation={new.attn_impl!r})"]
    if new.grad_checkpointing != old.grad_checkpointing:
        lines += [f"- {args}({was('gradient_checkpointing', False)})", f"+ {args}(gradient_checkpointing=True)"]
    if new.batch_size != old.batch_size:
        ga = int(s.get("gradient_accumulation_steps") or 1)
        ga_new = ga * old.batch_size // new.batch_size
        lines += [f"- {args}(per_device_train_batch_size={old.batch_size}, gradient_accumulation_steps={ga})",
                  f"+ {args}(per_device_train_batch_size={new.batch_size}, gradient_accumulation_steps={ga_new})"]
    if new.seq_len != old.seq_len:
        lines += [f"- max length {old.seq_len}", f"+ SFTConfig(max_length={new.seq_len})"]
    if new.optimizer != old.optimizer:
        lines += [f"- {args}({was('optim', 'adamw_torch')})", f'+ {args}(optim="{new.optimizer}")']
    if new.lora_dropout != old.lora_dropout:
        lines += [f"- LoraConfig(lora_dropout={old.lora_dropout})", "+ LoraConfig(lora_dropout=0.0)"]
    if new.lora_targets != old.lora_targets:
        lines += [f"- LoraConfig(target_modules={list(old.lora_targets)})", f"+ LoraConfig(target_modules={list(new.lora_targets)})"]
    if new.lora_r != old.lora_r:
        lines += [f"- LoraConfig(r={old.lora_r})", f"+ LoraConfig(r={new.lora_r})"]
    return lines


def config_yaml(c: Case, new: Setup) -> str:
    """The qlorafit YAML of the corrected setup (from the user's config, or a fresh one with the same settings)."""
    from qlorafit.core import config as qconfig

    user_config = c.inputs.config is not None
    cfg = c.inputs.config if user_config else qconfig.Config()
    if not user_config and not O.loss(new.loss_impl).chunked:  # transformers' default, not a choice: ours instead
        new = replace(new, loss_impl="chunked")
    # a script's dtype is a guess (fp32 when it set none): no advice for a qlorafit run, whose auto picks per GPU
    cfg = apply_setup(cfg, new, [f.name for f in knobs() if f.name != "compute_dtype" or user_config])
    if not user_config and c.settings.get("model"):
        cfg.model.name_or_path = str(c.settings["model"])
    if new.batch_size != c.setup.batch_size:  # the same effective batch
        cfg.train.grad_accum = cfg.train.grad_accum * c.setup.batch_size // new.batch_size
    return qconfig.to_yaml(cfg, header="corrected by qlorafit doctor")
