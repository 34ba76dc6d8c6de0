"""The doctor asks for the missing setup facts before naming a cause on a guess (doctor/facts.py, doctor/ask.py):
each answer is read by the same readers as the report's words, an answered fact is never asked again, only facts
that change the cause are asked, and the command takes the answers as flags."""

import json
import subprocess
import sys

import pytest

from qlorafit.doctor import Inputs, diagnose
from qlorafit.doctor import evidence as E
from qlorafit.doctor.ask import questions, with_facts
from qlorafit.doctor.case import build_case
from qlorafit.doctor.facts import BY_ID, FACTS, check
from qlorafit.errors import UserError

VAGUE = ("Training Qwen2.5-7B with deepspeed on 4 A100 40G, got\n"
         "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
         "39.39 GiB of which 1.20 GiB is free.\n")
NO_SETUP = ("it crashes after a few steps:\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
            "GPU 0 has a total capacity of 39.39 GiB of which 1.20 GiB is free.\n")


def _case(text: str, answers: dict):
    return build_case(with_facts(Inputs(error_text=text), answers))


@pytest.mark.parametrize("answer,reads", [
    ("full", lambda c: E.full_tune(c)),
    ("lora", lambda c: E.lora_16bit(c) and not E.full_tune(c)),
    ("qlora", lambda c: E.quantized(c) is True and not E.full_tune(c)),
])
def test_each_method_answer_is_read_as_that_method(answer, reads):
    assert not BY_ID["method"].known(_case(NO_SETUP, {}))
    c = _case(NO_SETUP, {"method": answer})
    assert reads(c) and BY_ID["method"].known(c)


@pytest.mark.parametrize("n", ["1", "2", "8"])
def test_the_gpu_count_answer_is_read_as_that_count(n):
    assert E.gpu_count(_case(NO_SETUP, {"gpus": n})) == int(n)


@pytest.mark.parametrize("model,billions", [("Qwen2.5-7B", 7.0), ("Llama-2 13B", 13.0), ("a 70B model", 70.0)])
def test_the_model_answer_is_read_as_its_size(model, billions):
    assert E.model_params(_case(NO_SETUP, {"model": model}))[0] == billions


@pytest.mark.parametrize("answer,quantized", [("4bit", True), ("8bit", True), ("16bit", None), ("fp32", None)])
def test_each_dtype_answer_is_read(answer, quantized):
    c = _case(NO_SETUP, {"dtype": answer})
    assert E.quantized(c) is quantized and BY_ID["dtype"].known(c)


def test_the_fp32_answer_makes_fp32_the_cause_and_16bit_does_not():
    fp32 = diagnose(with_facts(Inputs(error_text=NO_SETUP), {"dtype": "fp32"}))
    half = diagnose(with_facts(Inputs(error_text=NO_SETUP), {"dtype": "16bit"}))
    assert fp32.primary.id == "fp32_training" and half.primary.id != "fp32_training"


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.id)
def test_an_answered_fact_is_known_and_never_asked_again(fact):
    for answer in fact.branches:
        inputs = with_facts(Inputs(error_text=NO_SETUP), {fact.id: answer})
        d = diagnose(inputs)
        assert fact.known(d.case), (fact.id, answer)
        assert fact.id not in [q.fact.id for q in questions(inputs, d)]


def test_the_method_is_asked_when_it_decides_between_the_states_and_the_batch():
    inputs = Inputs(error_text=VAGUE)
    d = diagnose(inputs)
    asked = {q.fact.id: q for q in questions(inputs, d)}
    assert d.primary.id == "batch_or_seq"
    assert asked["method"].outcomes["full"][0] == "ddp_replica"
    assert asked["method"].outcomes["lora"][0] == "batch_or_seq"
    # the model and the GPUs are in the report: not asked
    assert "model" not in asked and "gpus" not in asked


def test_only_facts_that_change_the_cause_are_asked():
    inputs = Inputs(error_text=VAGUE)
    d = diagnose(inputs)
    for q in questions(inputs, d):
        assert any(cid != d.primary.id for cid, _ in q.outcomes.values())
    # a fact every answer of which leaves the cause as it is, is not asked: LoRA named, 16-bit said
    told = with_facts(inputs, {"method": "lora", "dtype": "16bit"})
    d2 = diagnose(told)
    assert d2.primary.id == "batch_or_seq"
    assert not {"method", "dtype"} & {q.fact.id for q in questions(told, d2)}


def test_a_cause_the_error_proves_asks_nothing():
    text = ("ValueError: Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM to fit "
            "the quantized model.")
    inputs = Inputs(error_text=text)
    d = diagnose(inputs)
    assert d.primary.strength == "proven" and questions(inputs, d) == []


def test_answers_are_checked_with_a_one_line_error_naming_the_flag():
    with pytest.raises(UserError, match="--method"):
        check(BY_ID["method"], "partial")
    with pytest.raises(UserError, match="--gpus"):
        check(BY_ID["gpus"], "four")
    with pytest.raises(UserError, match="--dtype"):
        check(BY_ID["dtype"], "fp8")
    assert check(BY_ID["gpus"], " 4 ") == "4"


def _doctor(*args, text=VAGUE, tmp_path=None):
    f = tmp_path / "oom.txt"
    f.write_text(text)
    return subprocess.run([sys.executable, "-m", "qlorafit", "doctor", str(f), *args], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_the_command_asks_first_and_takes_the_answer_as_a_flag(tmp_path):
    first = _doctor(tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "it depends on what the report does not say" in first.stdout
    assert "--method full: every GPU holds a full copy of the model [ddp_replica]" in first.stdout
    answered = _doctor("--method", "full", "--json", tmp_path=tmp_path)
    out = json.loads(answered.stdout)
    assert out["primary_cause"] == "ddp_replica"
    assert "method" not in [q["fact"] for q in out["questions"]]
    bad = _doctor("--gpus", "four", tmp_path=tmp_path)
    assert bad.returncode != 0 and "--gpus four" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("text", [
    "vllm serve Qwen/Qwen2.5-7B-Instruct on one A10: torch.OutOfMemoryError: CUDA out of memory",
    "inference of Baichuan2-13B-Chat on a 32G V100: CUDA out of memory",
    "用chatglm3-6b部署推理时显存不足 CUDA out of memory",
])
def test_an_inference_report_is_not_asked_full_or_lora(text):
    inputs = Inputs(error_text=text)
    d = diagnose(inputs)
    assert BY_ID["method"].known(d.case)
    assert "method" not in [q.fact.id for q in questions(inputs, d)]
    assert not BY_ID["method"].known(diagnose(Inputs(error_text="training it: CUDA out of memory")).case)
