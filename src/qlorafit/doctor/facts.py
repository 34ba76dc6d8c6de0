"""The setup facts an OOM report most often leaves out, though its writer knows them at once: the method (full
fine-tune, LoRA, QLoRA or inference), how many GPUs, which model, and the precision the weights were loaded in.

One spec per fact: its question, its command-line flag, the answers it takes and the words each answer stands for.
The words are what the doctor's readers already read in a report ('a full fine-tune', 'on 4 GPUs',
'load_in_4bit=True'), so an answer given on the command line is read exactly as the same words in the report would
be, by the same readers, and no rule tests a fact's name. `known` says whether the input already gives the fact; the
doctor asks only the facts it lacks, and of those only the ones whose answer would change its cause (doctor/ask.py
tries each of `branches`)."""

import re
from dataclasses import dataclass
from typing import Callable

from qlorafit.doctor import evidence as E
from qlorafit.doctor import prose
from qlorafit.doctor.case import Case


@dataclass(frozen=True)
class Fact:
    id: str
    flag: str
    question: str
    answers: tuple
    """The answers the flag takes ('*' for free text or a number)."""
    words: Callable[[str], str]
    """An answer -> the words it stands for in a report (what the readers read)."""
    branches: tuple
    """The answers tried when the input does not give the fact: the doctor asks the fact when they lead to
    different causes."""
    known: Callable[[Case], bool]
    """Whether the input (error text, script, config, settings, --model) already gives the fact."""


_INFERENCE = re.compile(r"\binferenc\w*|\bserv(?:e|es|ing|er)\b|\bdeploy\w*|\bgenerat\w*|\bpredict\w*|\bevaluat\w*|"
                        r"\bchat(?:ting)?\b|\bdemo\b|推理|部署|预测|评测|评估", re.I)


def _method_known(c: Case) -> bool:
    """The input says what the run does: a method named or configured, or inference (vLLM, serving, generating,
    evaluating) with no training word."""
    s = c.settings
    t = E.text(c)
    if E.uses_vllm(c) or (_INFERENCE.search(t) and not E.TRAINING_WORDS.search(t)):
        return True
    return E.full_tune(c) or E.lora_16bit(c) or bool(E.quantized(c)) or c.inputs.config is not None \
        or any(k in s for k in ("finetuning_type", "use_lora", "use_peft", "train_type")) \
        or E.adapter_named(c) or (c.inputs.script is not None and c.inputs.script.first("LoraConfig")
                                                  is not None)


_METHOD_WORDS = {
    "full": "a full fine-tune (every parameter trained)",
    "lora": "a LoRA fine-tune",  # the base's precision is the dtype fact's: Unsloth's LoRA is 4-bit
    "qlora": "a QLoRA fine-tune (LoRA on load_in_4bit=True weights)",
    "inference": "inference only (no optimizer, no gradients)",
}

_DTYPE_WORDS = {
    "fp32": "the weights are loaded in float32",
    "16bit": "the weights are loaded in bfloat16",
    "8bit": "the weights are loaded with load_in_8bit=True",
    "4bit": "the weights are loaded with load_in_4bit=True",
}


def _dtype_known(c: Case) -> bool:
    s = c.settings
    return E.quantized(c) is not None or E.precision(c) is not None or prose.quantization_stated(E.text(c)) is not None \
        or any(s.get(k) for k in ("torch_dtype", "dtype")) or c.inputs.config is not None \
        or bool(re.search(r"float32|fp32|bfloat16|float16|\bbf16\b|\bfp16\b|16[- ]?bit|half precision", E.text(c), re.I))


def _gpus_words(answer: str) -> str:
    n = int(answer)
    return "on 1 GPU" if n == 1 else f"on {n} GPUs"


FACTS = (
    Fact("method", "--method", "full fine-tune, LoRA, QLoRA, or inference only?", tuple(_METHOD_WORDS),
         _METHOD_WORDS.__getitem__, ("full", "lora"), _method_known),
    Fact("gpus", "--gpus", "how many GPUs does the run use?", ("*",), _gpus_words, ("1", "4"),
         lambda c: E.gpu_count(c) is not None or E.world_size(c) is not None),
    Fact("model", "--model", "which model (its name, or its size)?", ("*",), lambda a: f"the model is {a}",
         ("a 7B model", "a 70B model"), lambda c: c.shape is not None or E.model_params(c) is not None),
    Fact("dtype", "--dtype", "what precision are the weights loaded in?", tuple(_DTYPE_WORDS),
         _DTYPE_WORDS.__getitem__, ("fp32", "16bit"), _dtype_known),
)
BY_ID = {f.id: f for f in FACTS}


def check(fact: Fact, answer: str) -> str:
    """The answer as the fact takes it; a one-line error naming the flag otherwise."""
    from qlorafit.errors import UserError

    answer = str(answer).strip()
    if fact.id == "gpus":
        if not answer.isdigit() or int(answer) < 1:
            raise UserError(f"{fact.flag} {answer}: give the number of GPUs the run uses (1, 2, 8, ...)")
    elif "*" not in fact.answers and answer not in fact.answers:
        raise UserError(f"{fact.flag} {answer}: one of {', '.join(fact.answers)}")
    elif not answer:
        raise UserError(f"{fact.flag}: empty")
    return answer


def said(answers: dict) -> str:
    """The answers as one line of the user's words, the form the readers read."""
    return "; ".join(BY_ID[k].words(v) for k, v in answers.items())
