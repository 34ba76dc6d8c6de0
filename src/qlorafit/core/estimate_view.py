"""Showing an Estimate: the breakdown table, the verdict against a budget, and the JSON form. Plain Python."""

import dataclasses

from qlorafit.core.estimate import Estimate
from qlorafit.core.sizes import GIB, fmt_gib


def verdict(est: Estimate, budget_bytes: int | None, budget_name: str) -> str:
    if budget_bytes is None:
        return f"peak {fmt_gib(est.peak_bytes)} ({est.peak_phase})"
    headroom = budget_bytes - est.peak_bytes
    if headroom >= 0:
        return f"FITS on {budget_name}: peak {fmt_gib(est.peak_bytes)} of {fmt_gib(budget_bytes)}, headroom {fmt_gib(headroom)}"
    return (f"DOES NOT FIT on {budget_name}: peak {fmt_gib(est.peak_bytes)} of {fmt_gib(budget_bytes)}, "
            f"short by {fmt_gib(-headroom)}")


def table_text(est: Estimate, budget_bytes: int | None = None, budget_name: str = "") -> str:
    s = est.setup
    targets = ",".join(s.lora_targets)
    lines = [
        f"{est.model}: {s.quant}{'+dq' if s.double_quant and s.quant in ('nf4', 'fp4') else ''}, LoRA r={s.lora_r} on "
        f"{targets}, batch {s.batch_size} x {s.seq_len} tokens, checkpointing {s.grad_checkpointing}, {s.optimizer}, "
        f"{s.attn_impl} attention, {'streamed (lm_head in host RAM)' if s.offload_lm_head else s.loss_impl} loss, "
        f"{s.stack} stack",
        "",
        f"{'component (at the ' + est.peak_phase + ' peak)':<36}{'GiB':>9}  note",
    ]
    for c in est.components:
        lines.append(f"{c.name:<36}{c.bytes / GIB:>9.3f}  {c.note}")
    lines += [f"{'peak':<36}{est.peak_bytes / GIB:>9.3f}  phase: {est.peak_phase}", "",
              "phases: " + ", ".join(f"{k} {v / GIB:.2f}" for k, v in est.phases.items()) + " GiB"]
    if est.host_bytes:
        lines.append(f"host RAM needed beyond the process: {fmt_gib(est.host_bytes)}")
    lines.append(verdict(est, budget_bytes, budget_name))
    return "\n".join(lines)


def to_json(est: Estimate, budget_bytes: int | None = None, budget_name: str = "") -> dict:
    d = {
        "model": est.model,
        "setup": dataclasses.asdict(est.setup),
        "components": {c.name: c.bytes for c in est.components},
        "phases_bytes": dict(est.phases),
        "peak_phase": est.peak_phase,
        "peak_bytes": est.peak_bytes,
        "host_bytes": est.host_bytes,
        "trainable_params": est.trainable_params,
    }
    if budget_bytes is not None:
        d.update(budget_name=budget_name, budget_bytes=budget_bytes, fits=est.peak_bytes <= budget_bytes,
                 headroom_bytes=budget_bytes - est.peak_bytes)
    return d
