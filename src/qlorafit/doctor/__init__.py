"""qlorafit doctor: explain a CUDA OOM from its error text, a training script (static analysis, never run), a config
or a run directory, and prescribe ranked fixes with the GiB each saves, computed by the estimator. Plain Python.

    from qlorafit.doctor import Inputs, diagnose
    d = diagnose(Inputs(error_text=open("err.txt").read(), model="llama-3.1-8b"))
    d.primary.id, [f.title for f in d.fixes]

Modules: parse (message forms, numbers), phase (phase and step from evidence), script (ast extraction, expressions),
foreign (other trainers' configs and command lines), antipatterns (script checks), settings (-> Setup), rundir (run
directory), case (everything resolved once), evidence (facts rules ask), cause (Cause, Action, evidence strength),
rules / rules_setup / rules_launch (causes), fixes (sized fixes, corrected config), report (text, JSON, confidence),
first_sight (how often first causes known each way were right on public threads their rules had never seen),
thread_prior (where the rules only guess, the cause labelled public threads with the report's words had).
"""

from dataclasses import dataclass, field

from qlorafit.doctor.case import Case, Inputs, build_case
from qlorafit.doctor.fixes import Fix, config_yaml, corrected_setup, ranked, script_patch
from qlorafit.doctor.rules import Cause, diagnose_causes
from qlorafit.doctor.thread_prior import reconsider
from qlorafit.core.estimate import Setup


@dataclass
class Diagnosis:
    case: Case
    causes: list = field(default_factory=list)
    fixes: list = field(default_factory=list)
    corrected: Setup | None = None
    applied: list = field(default_factory=list)
    patch: list = field(default_factory=list)  # '- old / + new' lines for a script (or a foreign trainer config)
    yaml: str = ""  # the corrected qlorafit YAML, when the input was a qlorafit config or run
    questions: list = field(default_factory=list)
    """The setup facts the input lacks that would change the cause (doctor/ask.py), asked first; filled by the
    caller (the command), since each costs a diagnosis per answer."""

    @property
    def primary(self) -> Cause | None:
        return self.causes[0] if self.causes else None


def diagnose(inputs: Inputs) -> Diagnosis:
    """Parse, estimate, match the rules, size and rank the fixes, and write the corrected configuration."""
    c = build_case(inputs)
    causes = diagnose_causes(c)
    if inputs.thread_prior and c.has_oom:  # where the rules only guess an OOM's cause, the labelled threads decide
        causes = reconsider(_report_text(inputs), causes)
    d = Diagnosis(case=c, causes=causes)
    if c.oom.phase is None and d.primary and d.primary.phase and d.primary.strength not in ("inferred", "words"):
        # the cause proves where it failed (its message, its frames or its numbers); a guessed cause places nothing
        c.oom.phase, c.oom.phase_evidence = d.primary.phase, f"implied by the cause: {d.primary.title}"
    d.fixes = ranked(c, d.primary)
    force = bool(d.primary and d.primary.fix_ids and c.has_oom)
    # a full fine-tune's estimate is a LoRA run's (Case.full_fine_tune): settings corrected by it would be a LoRA's
    d.corrected, d.applied = (None, []) if c.full_fine_tune else corrected_setup(c, d.fixes, force)
    if inputs.config is not None:
        if d.corrected is not None and d.applied:
            d.yaml = config_yaml(c, d.corrected)
    else:
        if d.corrected is not None and d.applied and c.from_user:  # no patch of settings nobody gave
            d.patch = script_patch(c, d.corrected)
        for f in c.findings:  # the script's own mistakes are part of the corrected settings
            if f.breaks_run or (d.primary and f.id == d.primary.id):
                d.patch += [p for p in f.patch if p not in d.patch]
    return d


def _report_text(inputs: Inputs) -> str:
    """The words the thread prior reads: the pasted text and the script, as it was fitted on."""
    return inputs.error_text + ("\n" + inputs.script.text if inputs.script is not None else "")


__all__ = ["Inputs", "Diagnosis", "diagnose", "Cause", "Fix"]
