"""What a rule returns: a Cause with its evidence and the actions no estimate can size. Shared by every rules module."""

from dataclasses import dataclass, field

STRENGTH = ("proven", "script", "numbers", "inferred", "words")
"""How a cause is known, strongest first: the error or traceback names it; the user's script or config shows it; the
parsed numbers or the estimate point to it; only the phase or library defaults suggest it; only the words of labelled
public threads like the report point to it (thread_prior.py, where the rules only guessed). Causes rank by this first
(the thread prior puts its pick ahead of a guess after the rules have ranked)."""


@dataclass
class Action:
    title: str
    cost: str
    saves_bytes: int | None = None
    basis: str = ""  # where saves_bytes comes from ('parsed: ...'), empty when it cannot be sized
    patch: list = field(default_factory=list)
    id: str = ""


@dataclass
class Cause:
    id: str
    title: str
    why: str
    evidence: list = field(default_factory=list)
    fix_ids: tuple = ()
    actions: list = field(default_factory=list)
    strength: str = "inferred"  # one of STRENGTH: how this cause is known (the report's confidence line says it)
    phase: str | None = None
    """The phase this cause's own evidence fixes, where its mechanism happens in one phase only: bitsandbytes' dispatch
    refusal is raised by from_pretrained (load); weights larger than the card cannot get past the load; ZeRO-3's
    gather for generation generates. Used only when nothing else placed the failure (diagnose)."""


