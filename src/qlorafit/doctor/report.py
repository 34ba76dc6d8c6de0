"""A Diagnosis shown: a short human report, or JSON. Rounding happens here and nowhere else."""

import dataclasses

from qlorafit.doctor import Diagnosis, first_sight, thread_prior
from qlorafit.core.sizes import fmt_gib

_WHAT_TO_PASTE = {
    "no_error": "the full error (the 'CUDA out of memory ...' line and the traceback above it)",
    "no_numbers": "the complete OOM message: recent PyTorch prints 'GPU 0 has a total capacity of ...' after it",
    "no_phase": "the traceback or the last lines of the log before the error (they tell load, step, eval or save)",
}


def _asks(d: Diagnosis) -> list[str]:
    c = d.case
    out = list(c.notes)
    if c.has_oom and c.oom.kind in ("cuda", "bnb") and c.oom.total_bytes is None:
        out.append("paste " + _WHAT_TO_PASTE["no_numbers"])
    if c.oom.kind and c.oom.phase is None:
        out.append("paste " + _WHAT_TO_PASTE["no_phase"])
    if not d.causes and not c.oom.kind and (c.inputs.error_text or "").strip():
        out.append("the text holds no out-of-memory error this doctor knows; paste " + _WHAT_TO_PASTE["no_error"])
    return list(dict.fromkeys(out))


_HOW = {
    "proven": ("high", "the error text or traceback names it"),
    "script": ("medium", "your script or config shows it; the error itself does not name it"),
    "numbers": ("medium", "inferred from the numbers in the error and the estimate"),
    "inferred": ("low", "only the phase, your words or library defaults point to it"),
    "words": ("low", "the rules only guessed; the words of labelled public threads like this one point to it"),
}


def confidence(d: Diagnosis) -> tuple[str, str]:
    """(high|medium|low, why): how sure the diagnosis is, in one line."""
    c, p = d.case, d.primary
    if p is None:
        return "none", "no cause matched what was given"
    level, why = _HOW[p.strength]
    if not c.from_user and c.est is not None:
        why += "; the sizes rest on assumed settings (no script or config)"
        level = "low" if level == "medium" else level
    if c.oom.kind and c.oom.phase is None:
        why += "; the phase is unknown"
    if p.strength == "words":  # the prior's own cross-validation, on threads it was not fitted on
        rec, said = thread_prior.record(), "where it overruled the rules' guess it was right on {} of {} threads it " \
                                            "had not seen"
    else:  # measured, not assumed: first causes known this way on public threads their rules had never seen
        rec, said = first_sight.right_of(p.id, p.strength), "first causes known this way were right on {} of {} " \
                                                            "public threads at first sight"
    if rec:
        why += "; " + said.format(*rec)
    if c.oom.form == "presumed":  # no OOM form or word: every cause rests on the presumption
        level, why = "low", why + "; the text does not say it ran out of memory (an OOM is presumed)"
    return level, why


def _saves(f) -> str:
    if f.saves_range:
        lo, hi = f.saves_range
        if hi - lo < 0.05 * 2**30:
            return f"saves about {fmt_gib(hi)}"
        return f"saves {fmt_gib(lo).replace(' GiB', '')}-{fmt_gib(hi)} depending on your batch size and length"
    return f"saves {fmt_gib(f.saves_bytes)}" if f.saves_bytes else "saves: not sizable"


def _arg(answer: str) -> str:
    """A branch answer as a flag's argument ('a 7B model' -> 'NAME-7B')."""
    words = answer.split()
    return answer if len(words) == 1 else "NAME-" + next((w for w in words if w[0].isdigit()), words[-1])


def text_report(d: Diagnosis) -> str:
    c, p = d.case, d.primary
    lines = ["qlorafit doctor", ""]
    if p is None:
        if c.est and c.budget_bytes and not c.over_budget and not c.has_oom:
            lines.append(f"no problem found: the estimate is {fmt_gib(c.est.peak_bytes)} of {fmt_gib(c.budget_bytes)} "
                         f"on {c.budget_name}")
        else:
            lines.append("cause: not determined from what was given")
    else:
        lines += [f"cause: {p.title} [{p.id}]", f"  {p.why}", "", "evidence:"]
        lines += [f"  - {e}" for e in p.evidence]
    level, why = confidence(d)
    lines += ["", f"confidence: {level} - {why}"]
    phase = c.oom.phase or ("unknown" if c.oom.kind else None)
    if phase:
        step = f" {c.oom.step}" if phase == "later_step" and c.oom.step else ""
        lines.append(f"phase: {phase.replace('_', ' ')}{step}" + (f" ({c.oom.phase_evidence})" if c.oom.phase_evidence
                                                                 else ""))
    if d.questions:  # the facts that would change the cause come before any fix prescribed on a guess
        lines += ["", "it depends on what the report does not say; answer and run again:"]
        for q in d.questions:
            lines.append(f"  - {q.fact.question} ({q.fact.flag} ...)")
            for answer, (cid, title) in q.outcomes.items():
                lines.append(f"      {q.fact.flag} {_arg(answer)}: {title} [{cid}]"
                             + (" (as now)" if p is not None and cid == p.id else ""))
    asks = _asks(d)
    if asks and level in ("low", "none"):  # ask for what is missing before prescribing on a guess
        lines += ["", "to be sure, first give:"] + [f"  - {a}" for a in asks]
    # a full fine-tune: the estimator sizes LoRA and QLoRA runs, so its peak (and what a fix 'fits' to) leaves out the
    # gradients and Adam state of every weight; it is printed as what it is, and no fix is said to fit by it
    full = c.full_fine_tune
    if c.est:
        top = ", ".join(f"{x.name} {fmt_gib(x.bytes)}" for x in sorted(c.est.components, key=lambda x: -x.bytes)[:4])
        lines += ["", f"where the memory goes (estimate{'' if c.from_user else ' with ASSUMED settings'}, "
                  f"{c.est.model}, {c.setup.stack} stack"
                  + (", sized as a LoRA run: a full fine-tune adds gradients and Adam state for every weight" if full
                     else "") + "): peak "
                  f"{fmt_gib(c.est.peak_bytes)} at {c.est.peak_phase}" + (f" on {c.budget_name}" if c.budget_name else ""),
                  f"  {top}"]
    others = d.causes[1:]
    if others:
        lines += ["", "also matched: " + "; ".join(f"{x.title} [{x.id}]" for x in others)]
    if c.findings:
        lines += ["", "script findings:"]
        for f in c.findings:
            lines.append(f"  - line {f.line}: [{f.id}] {f.reason}. Fix: {f.fix}")
    if d.fixes:
        lines += ["", "fixes, the cause's first, then by GiB saved per cost:"]
        for i, f in enumerate(d.fixes[:8], 1):
            saves = _saves(f) if not (full and f.basis in ("", "estimator")) else \
                "saves: not sized (the estimate is a LoRA run's)"
            after = (f", peak {fmt_gib(f.peak_after)}" + (" (fits)" if f.fits_after else " (still over)"
                                                          if f.fits_after is False else "")) if f.peak_after and not full \
                else ""
            src = f" [{f.basis}]" if f.basis and f.basis != "estimator" else ""
            lines.append(f"  {i}. {f.title}: {saves}{after}; cost: {f.cost}{src}")
    if d.patch:
        lines += ["", "patched settings:"] + [f"  {x}" for x in d.patch]
    if d.corrected is not None and d.applied and c.from_user and not full:  # a 'corrected' total of assumed
        # settings is a guess, and of a full fine-tune sized as a LoRA run a wrong one
        est = c.estimate_with(d.corrected)
        lines.append(f"  estimate with {', '.join(f.id for f in d.applied)} applied: {fmt_gib(est.peak_bytes)}"
                     + (f" of {fmt_gib(c.budget_bytes)}" if c.budget_bytes else ""))
    if d.yaml:
        lines += ["", "corrected qlorafit config:", d.yaml.rstrip()]
    if c.assumptions and c.est:  # the defaults matter only where they sized an estimate
        lines += ["", "assumptions (defaults used where the input said nothing):"] + [f"  - {a}" for a in c.assumptions]
    if asks and level not in ("low", "none"):
        lines += ["", "for a better answer:"] + [f"  - {a}" for a in asks]
    return "\n".join(lines)


def to_json(d: Diagnosis) -> dict:
    c = d.case
    oom = dataclasses.asdict(c.oom)
    return {
        "primary_cause": d.primary.id if d.primary else None,
        "confidence": dict(zip(("level", "why"), confidence(d))),
        "phase": c.oom.phase, "step": c.oom.step,
        "causes": [dataclasses.asdict(x) for x in d.causes],
        "parsed": oom,
        "model": c.est.model if c.est else None,
        "setup": dataclasses.asdict(c.setup) if c.setup else None,
        "budget_bytes": c.budget_bytes, "budget_name": c.budget_name,
        "estimate": {"peak_bytes": c.est.peak_bytes, "peak_phase": c.est.peak_phase,
                     "components": {x.name: x.bytes for x in c.est.components}} if c.est else None,
        "findings": [dataclasses.asdict(f) for f in c.findings],
        "fixes": [dataclasses.asdict(f) for f in d.fixes],
        "corrected_setup": dataclasses.asdict(d.corrected) if d.corrected and d.applied else None,
        "corrected_peak_bytes": c.estimate_with(d.corrected).peak_bytes if d.corrected and d.applied else None,
        "patch": d.patch, "yaml": d.yaml or None, "assumptions": c.assumptions, "asks": _asks(d),
        "questions": [{"fact": q.fact.id, "flag": q.fact.flag, "question": q.fact.question,
                       "outcomes": {a: cid for a, (cid, _) in q.outcomes.items()}} for q in d.questions],
    }
