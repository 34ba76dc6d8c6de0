"""Ask for the missing input before naming a cause on a guess: which setup facts (doctor/facts.py) the report leaves
out and would change the answer, and the cause each answer points to.

For every fact the input does not give, the doctor is run again as if the report had said each of the fact's
`branches` ('a full fine-tune', 'a LoRA fine-tune'); a fact whose answers lead to different causes
decides the diagnosis, and the report asks it first, with what each answer would mean. Nothing here is a rule: the
answers are read by the same readers as the report's own words."""

import dataclasses
from dataclasses import dataclass

from qlorafit.doctor import Diagnosis, Inputs, diagnose
from qlorafit.doctor.facts import FACTS, Fact, said


@dataclass
class Question:
    fact: Fact
    outcomes: dict
    """answer -> (cause id, cause title) the doctor names when the report says that answer."""


def with_facts(inputs: Inputs, answers: dict) -> Inputs:
    """The inputs as if the report had also said these answers (a line of the user's words after the error text)."""
    if not answers:
        return inputs
    text = (inputs.error_text or "").rstrip("\n")
    line = f"(the user adds: {said(answers)})"
    return dataclasses.replace(inputs, error_text=f"{text}\n{line}" if text else line)


def questions(inputs: Inputs, d: Diagnosis) -> list[Question]:
    """The facts the input lacks whose answers change the primary cause, in FACTS order (the method first: on public
    threads it is the fact that most often separates a full fine-tune's states from the batch)."""
    if d.primary is None or d.primary.strength == "proven":
        return []  # the error names the cause: no answer about the setup changes it
    now = d.primary.id
    out = []
    for fact in FACTS:
        if fact.known(d.case):
            continue
        outcomes = {}
        for answer in fact.branches:
            p = diagnose(with_facts(inputs, {fact.id: answer})).primary
            outcomes[answer] = (p.id, p.title) if p else (None, "no cause")
        if any(cid != now for cid, _ in outcomes.values()):
            out.append(Question(fact, outcomes))
    return out
