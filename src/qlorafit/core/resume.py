"""Which configuration changes a resumed run accepts. Each config field declares its class once, in its metadata
(`resume=` in qlorafit.core.config: safe, samples, state, shape); this module only reads it. Plain Python.

    safe     allowed and listed: lr, schedule, eval, logging, saving, memory levers, max_steps/epochs
    samples  refused unless --allow-changes: the rest of the epoch is then re-drawn under the new setting
    state    refused unless --allow-changes: a changed optimizer then starts from fresh state
    shape    refused: the checkpoint cannot load into the new model

A refusal names every field, with its old and new value, so that "every sample once" is never broken silently.
"""

from dataclasses import dataclass, field

from qlorafit.core import config as C
from qlorafit.errors import UserError


@dataclass
class Changes:
    """Changed fields by resume class: [(key, old, new)]."""

    by_class: dict = field(default_factory=lambda: {c: [] for c in C.RESUME_CLASSES})

    def keys(self, *classes: str) -> list[str]:
        return [k for c in classes for k, _, _ in self.by_class[c]]

    def describe(self, *classes: str) -> str:
        return ", ".join(f"{k} {old!r} -> {new!r}" for c in classes for k, old, new in self.by_class[c])


def resume_class(key: str) -> str:
    """'train.lr' -> 'safe', read from the field's metadata."""
    return C.keyed_fields()[key].metadata["resume"]


def flat(cfg: C.Config) -> dict:
    """{'section.key': value} of every field (output_dir as it is)."""
    out = {}
    for sec, v in C.to_dict(cfg).items():
        out.update({f"{sec}.{k}": x for k, x in v.items()} if isinstance(v, dict) else {sec: v})
    return out


def changes(old: C.Config, new: C.Config) -> Changes:
    a, b = flat(old), flat(new)
    ch = Changes()
    for key in b:
        if key != "output_dir" and a.get(key) != b[key]:
            ch.by_class[resume_class(key)].append((key, a.get(key), b[key]))
    return ch


def check(old: C.Config, new: C.Config, allow: bool) -> Changes:
    """Raise a UserError naming every field whose change would break the run, unless `allow` covers it; return the
    changes (the caller lists the safe ones, and drops the optimizer state when the optimizer changed)."""
    ch = changes(old, new)
    if ch.by_class["shape"]:
        raise UserError(f"--resume: the checkpoint cannot load into the changed model: {ch.describe('shape')}. "
                        f"Put them back, or start a new run in another --output-dir (lora.resume_adapter can start it "
                        f"from this run's adapter)")
    risky = ch.keys("samples", "state")
    if risky and not allow:
        what = [msg for cls, msg in (
            ("samples", "the samples each step trains would change (some would train twice or never)"),
            ("state", "the saved optimizer/adapter state would no longer match")) if ch.by_class[cls]]
        then = ["re-draw the rest of this epoch under the new settings"] if ch.by_class["samples"] else []
        then += ["start the new optimizer from fresh state"] if "train.optimizer" in ch.keys("state") else []
        then += ["keep the saved adapter under the new setting"] if set(ch.keys("state")) - {"train.optimizer"} else []
        raise UserError(f"--resume: changed {ch.describe('samples', 'state')}: {'; '.join(what)}. Put them back, or "
                        f"add --allow-changes to {' and '.join(then)}")
    return ch
