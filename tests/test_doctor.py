"""qlorafit doctor: each OOM message form parsed, phases found, scripts read statically (never run), rules, fixes,
the CLI's one-line errors, and the torch-free import."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qlorafit.cli import main
from qlorafit.doctor import Inputs, diagnose
from qlorafit.doctor.parse import oom_kind, parse, size_bytes
from qlorafit.doctor.script import analyse, read_script
from qlorafit.errors import UserError

GIB, MIB = 1024**3, 1024**2
FIX = Path(__file__).parent / "fixtures" / "doctor"

OLD = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 16.00 GiB total capacity; 14.00 GiB "
       "already allocated; 1.50 GiB free; 14.50 GiB reserved in total)")
OLD_BY_PYTORCH_MIB = ("RuntimeError: CUDA out of memory. Tried to allocate 146.00 MiB (GPU 0; 8.00 GiB total capacity; "
                      "7.21 GiB already allocated; 0 bytes free; 7.32 GiB reserved in total by PyTorch) If reserved "
                      "memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.")
CURRENT = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 150.00 MiB. GPU 0 has a total capacity of "
           "3.80 GiB of which 130.31 MiB is free. Including non-PyTorch memory, this process has 3.66 GiB memory in use. "
           "Of the allocated memory 3.52 GiB is allocated by PyTorch, and 53.87 MiB is reserved by PyTorch but "
           "unallocated. If reserved but unallocated memory is large try setting "
           "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")
OTHER = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB. GPU 0 has a total capacity of "
         "23.65 GiB of which 512.00 MiB is free. Process 4242 has 12.00 GiB memory in use. Including non-PyTorch "
         "memory, this process has 11.10 GiB memory in use. Of the allocated memory 10.20 GiB is allocated by "
         "PyTorch, and 300.00 MiB is reserved by PyTorch but unallocated.")


def test_size_bytes():
    assert size_bytes("150.00 MiB") == 150 * MIB
    assert size_bytes("2.00 GiB") == 2 * GIB
    assert size_bytes("0 bytes") == 0
    with pytest.raises(ValueError):
        size_bytes("lots")


def test_old_form():
    o = parse(OLD)
    assert (o.kind, o.form, o.gpu_index) == ("cuda", "old", 0)
    assert (o.requested_bytes, o.total_bytes, o.allocated_bytes) == (2 * GIB, 16 * GIB, 14 * GIB)
    assert (o.free_bytes, o.reserved_bytes, o.unallocated_reserved_bytes) == (int(1.5 * GIB), int(14.5 * GIB), GIB // 2)


def test_old_form_by_pytorch_in_mib_with_zero_free():
    o = parse(OLD_BY_PYTORCH_MIB)
    assert o.form == "old" and o.requested_bytes == 146 * MIB and o.free_bytes == 0
    assert o.reserved_bytes == size_bytes("7.32 GiB")


def test_old_form_wrapped_over_lines():
    o = parse(OLD.replace("; 14.00 GiB ", ";\n  14.00 GiB\n  "))
    assert o.allocated_bytes == 14 * GIB


def test_current_form():
    o = parse(CURRENT)
    assert (o.kind, o.form) == ("cuda", "current")
    assert o.requested_bytes == 150 * MIB and o.total_bytes == size_bytes("3.80 GiB")
    assert o.free_bytes == size_bytes("130.31 MiB") and o.process_bytes == size_bytes("3.66 GiB")
    assert o.allocated_bytes == size_bytes("3.52 GiB")
    assert o.unallocated_reserved_bytes == size_bytes("53.87 MiB")
    assert o.reserved_bytes == o.allocated_bytes + o.unallocated_reserved_bytes


def test_current_form_with_other_process():
    o = parse(OTHER)
    assert o.other_processes == {4242: 12 * GIB} and o.process_bytes == size_bytes("11.10 GiB")
    d = diagnose(Inputs(error_text=OTHER))
    assert d.primary.id == "other_process"
    assert d.fixes[0].id == "free_gpu" and d.fixes[0].saves_bytes > 11 * GIB  # total - free - this process


def test_process_line_that_is_ourselves_is_not_another_process():
    text = ("OutOfMemoryError: CUDA out of memory. Tried to allocate 11.89 GiB. GPU 0 has a total capacity of 22.17 GiB "
            "of which 3.38 GiB is free. Process 39863 has 18.71 GiB memory in use. Of the allocated memory 18.18 GiB "
            "is allocated by PyTorch, and 308.07 MiB is reserved by PyTorch but unallocated.")
    assert all(c.id != "other_process" for c in diagnose(Inputs(error_text=text)).causes)


@pytest.mark.parametrize("text,kind", [
    ("torch.OutOfMemoryError: CUDA out of memory.", "cuda"),
    ("torch.cuda.OutOfMemoryError: CUDA out of memory.", "cuda"),
    ("RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported", "cuda"),
    ("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", "cublas"),
    ("RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "cudnn"),
    ("RuntimeError: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a "
     "non-contiguous input.", "cudnn"),
    ("Error cudaMallocManaged failed: out of memory (bitsandbytes paged optimizer)", "bnb"),
    ('  File "/x/site-packages/bitsandbytes/functional.py", line 1010, in quantize_4bit\n'
     "torch.OutOfMemoryError: CUDA out of memory.", "bnb"),
    ("RuntimeError: [enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: you "
     "tried to allocate 268435456 bytes. Error code 12 (Cannot allocate memory)", "cpu"),
    ("RuntimeError: DefaultCPUAllocator: not enough memory: you tried to allocate 58982400 bytes.", "cpu"),
    ("ValueError: Attempting to unscale FP16 gradients.", None),
    ("everything is fine", None),
])
def test_message_kinds(text, kind):
    assert oom_kind(text) == kind


def test_cpu_bytes_and_cudnn_flag():
    assert parse("DefaultCPUAllocator: can't allocate memory: you tried to allocate 268435456 bytes.").requested_bytes \
        == 268435456
    assert parse("CUDNN_STATUS_NOT_SUPPORTED").cudnn_not_supported


def _tb(*frames):
    return "Traceback (most recent call last):\n" + "".join(
        f'  File "/x/{f}.py", line 1, in {f}\n    pass\n' for f in frames) + "torch.OutOfMemoryError: CUDA out of memory."


@pytest.mark.parametrize("text,phase", [
    (_tb("main", "from_pretrained", "_load_pretrained_model"), "load"),
    (" 0%|          | 0/30 [00:00<?, ?it/s]\n" + _tb("train", "_inner_training_loop", "training_step", "backward"),
     "first_step"),
    (" 41%|####      | 412/1000 [3:10:02<4:31:00, 2.1s/it]\n" + _tb("train", "_inner_training_loop", "training_step"),
     "later_step"),
    (_tb("train", "_inner_training_loop", "_maybe_log_save_evaluate", "evaluate", "evaluation_loop",
         "prediction_step", "compute_loss"), "eval"),
    (_tb("train", "_inner_training_loop", "_maybe_log_save_evaluate", "_save_checkpoint", "save_model"), "save"),
    (_tb("main", "merge_and_unload", "_unload_and_optionally_merge"), "merge"),
])
def test_phase_from_frames(text, phase):
    o = parse(text)
    assert o.phase == phase
    if phase == "later_step":
        assert (o.step, o.total_steps, o.elapsed_s) == (412, 1000, 3 * 3600 + 10 * 60 + 2)


def test_fp16_signs_without_oom_are_not_memory():
    d = diagnose(Inputs(error_text="{'loss': 0.0, 'grad_norm': nan, 'learning_rate': 1e-4, 'epoch': 0.05}"))
    assert d.primary.id == "fp16_overflow" and d.fixes[0].id == "bf16"


def test_trainer_logs_give_the_batch():
    o = parse("  Instantaneous batch size per device = 4\n  Gradient Accumulation steps = 8\n")
    assert o.log_settings == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 8}


# --- scripts ------------------------------------------------------------------------------------------------------

def test_script_is_never_executed(tmp_path, monkeypatch):
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    monkeypatch.setenv("QLORAFIT_CANARY", str(canary))
    info = read_script(str(FIX / "dangerous_train.py"))
    d = diagnose(Inputs(script=info, gpu="rtx4090"))
    assert canary.read_text() == "still here" and not Path(str(canary) + ".created").exists()
    assert info.model_id == "meta-llama/Llama-3.1-8B"
    ids = {f.id for f in d.case.findings}
    assert {"load_in_4bit_kwarg", "use_cache", "fp16_on_bf16_gpu", "removed_args", "no_checkpointing",
            "eval_accumulation", "device_map_ddp", "pad_token", "packing_memory"} <= ids
    # and through the CLI, in a child process that would show the SystemExit message if it ran the file
    out = subprocess.run([sys.executable, "-m", "qlorafit", "doctor", "--script", str(FIX / "dangerous_train.py"),
                          "--gpu", "rtx4090", "--json"], capture_output=True, text=True,
                         env={**os.environ, "QLORAFIT_CANARY": str(canary)}, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert canary.read_text() == "still here"
    assert json.loads(out.stdout)["primary_cause"] == "load_in_4bit_kwarg"


SCRIPT = '''
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TrainingArguments
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

MODEL = "Qwen/Qwen2.5-7B"
LEN = 2048
bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
model = AutoModelForCausalLM.from_pretrained(MODEL, quantization_config=bnb, attn_implementation="eager")
lora = LoraConfig(r=64, target_modules="all-linear", lora_dropout=0.1)
cfg = SFTConfig(per_device_train_batch_size=4, gradient_accumulation_steps=2, gradient_checkpointing=False,
                optim="adamw_torch", bf16=True, max_length=LEN)
SFTTrainer(model=model, args=cfg, peft_config=lora).train()
'''


def test_script_extraction_resolves_names():
    s = analyse(SCRIPT).settings
    assert s["model"] == "Qwen/Qwen2.5-7B" and s["max_length"] == 2048
    assert s["load_in_4bit"] is True and s["bnb_4bit_quant_type"] == "nf4"
    assert s["bnb_4bit_compute_dtype"] == "torch.bfloat16" and s["attn_implementation"] == "eager"
    assert (s["r"], s["target_modules"], s["lora_dropout"]) == (64, "all-linear", 0.1)
    assert (s["per_device_train_batch_size"], s["gradient_checkpointing"], s["optim"]) == (4, False, "adamw_torch")


def test_fixes_are_estimator_sized_and_patched():
    from qlorafit.doctor.script import ScriptInfo

    info: ScriptInfo = analyse(SCRIPT)
    err = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.00 GiB.\n 0%| | 0/100 [00:01<?, ?it/s]"
    d = diagnose(Inputs(error_text=err, script=info, gpu="rtx4090"))
    est = d.case.est
    assert est.model == "qwen2.5-7b" and d.case.setup.attn_impl == "eager" and d.case.setup.stack == "hf"
    for f in d.fixes:
        if f.basis == "estimator":
            assert f.saves_bytes == est.peak_bytes - f.peak_after > 0
    scores = [f.score for f in d.fixes if f.basis == "estimator" and f.id not in d.primary.fix_ids]
    assert scores == sorted(scores, reverse=True)
    assert d.case.estimate_with(d.corrected).peak_bytes <= 0.95 * d.case.budget_bytes
    assert any(line.startswith("+ ") for line in d.patch)


def test_qlorafit_config_gives_a_corrected_yaml(tmp_path):
    import yaml

    from qlorafit.core import config as qconfig

    cfg = qconfig.from_dict({"model": {"name_or_path": "llama-3.1-8b", "attn_impl": "eager"},
                             "data": {"max_seq_length": 8192}, "train": {"micro_batch_size": 4,
                                                                          "grad_checkpointing": "off"}})
    d = diagnose(Inputs(error_text="torch.OutOfMemoryError: CUDA out of memory.", config=cfg, gpu="rtx4090"))
    assert d.yaml and d.case.setup.stack == "qlorafit"
    fixed = qconfig.from_dict({k: v for k, v in yaml.safe_load(d.yaml).items()})
    assert fixed.train.micro_batch_size * fixed.train.grad_accum == 4 * cfg.train.grad_accum  # same effective batch


def test_unknown_model_says_what_to_pass():
    d = diagnose(Inputs(error_text=CURRENT, settings={"model": "someone/unknown-7b"}))
    assert any("--model" in n for n in d.case.notes)


# --- run directory ------------------------------------------------------------------------------------------------

def test_run_directory(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"step": i, "mem_allocated": 8 * GIB, "mem_reserved": 14 * GIB, "mem_fragmentation": 6 * GIB}) for i in (1, 2)))
    (tmp_path / "events.jsonl").write_text(json.dumps(
        {"time": 1.0, "step": 0, "kind": "oom_recovery", "phase": "backward", "old_micro_batch": 4,
         "new_micro_batch": 2}) + "\n")
    assert main(["doctor", "--run", str(tmp_path), "--json"]) == 0
    from qlorafit.doctor.rundir import read_run

    d = diagnose(Inputs(run=read_run(str(tmp_path))))
    assert d.primary.id == "fragmentation"


def test_run_directory_of_a_killed_run(tmp_path):
    """An OOM-killed run can leave half a line at the end of metrics.jsonl: the doctor still reads the run (as
    `qlorafit report` does); a broken line elsewhere is named by file and line."""
    from qlorafit.doctor.rundir import read_run

    rows = [json.dumps({"step": i, "mem_allocated": 8 * GIB, "mem_reserved": 9 * GIB}) for i in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(rows) + "\n" + rows[0][:20])
    info = read_run(str(tmp_path))
    assert (info.steps_logged, info.last["step"], info.peak("mem_reserved")) == (2, 2, 9 * GIB)
    (tmp_path / "metrics.jsonl").write_text(rows[0] + "\n{broken\n" + rows[1] + "\n")
    with pytest.raises(UserError, match=r"metrics.jsonl line 2"):
        read_run(str(tmp_path))


# --- CLI ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["doctor", "--error", "/nonexistent/err.txt"], "--error /nonexistent/err.txt: no such file"),
    (["doctor", "--script", "/nonexistent/train.py"], "--script /nonexistent/train.py: no such file"),
    (["doctor", "--config", "/nonexistent/run.yaml"], "--config /nonexistent/run.yaml: no such file"),
    (["doctor", "--run", "/nonexistent/run"], "--run /nonexistent/run: no such run directory"),
    (["doctor", "--error", "-", "--model", "no-such-model"], "unknown model"),
    (["doctor", "--error", "-", "--gpu", "no-such-gpu"], "unknown GPU"),
])
def test_cli_errors_are_one_line(argv, needle, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(OLD))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_bad_python_is_one_line(tmp_path, capsys):
    bad = tmp_path / "train.py"
    bad.write_text("def broken(:\n")
    assert main(["doctor", "--script", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid Python at line 1" in err and len(err.strip().splitlines()) == 1


def test_cli_reads_stdin_and_prints_report(capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(OLD))
    assert main(["doctor", "--model", "llama-3.1-8b", "--gpu", "v100"]) == 0
    out = capsys.readouterr().out
    assert "cause:" in out and "14.00 GiB" in out and "fixes" in out


def test_cli_nothing_given(capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["doctor"]) == 2
    assert "nothing to examine" in capsys.readouterr().err


def test_doctor_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import qlorafit.doctor, qlorafit.doctor.report, qlorafit.commands.doctor\n"
            "from qlorafit.doctor import Inputs, diagnose\n"
            f"print(diagnose(Inputs(error_text={OLD!r}, model='llama-3.1-8b')).primary.id)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_qlorafit_config_can_be_told_to_stream_lm_head():
    from qlorafit.core import config as qconfig

    cfg = qconfig.from_dict({"model": {"name_or_path": "llama-3.1-8b"}, "data": {"max_seq_length": 8192},
                             "train": {"micro_batch_size": 1}})
    d = diagnose(Inputs(error_text="torch.OutOfMemoryError: CUDA out of memory.", config=cfg, gpu="rtx4090"))
    fix = next(f for f in d.fixes if f.id == "offload_lm_head")
    assert fix.changes == {"offload_lm_head": True}
    assert 0.8 * 128256 * 4096 * 2 < fix.saves_bytes <= 128256 * 4096 * 2  # the bf16 head, less its stream buffers
