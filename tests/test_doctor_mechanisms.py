"""qlorafit doctor (issue 15, session 8): general mechanisms behind the misses of every held-out split at its first
measurement (tests/fixtures/oom_threads/README.md, 'session 8: misses by mechanism'). Each is checked on synthetic
text written for the mechanism, never on a thread's own words."""

import pytest

from qlorafit.doctor import diagnose
from qlorafit.doctor.foreign import read_posted
from qlorafit.doctor.parse import host_memory_named, parse


def _d(text, **kw):
    return diagnose(read_posted(text, **kw))


# --- which memory: Apple's unified memory is the GPU's ---------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Fine-tuning a 7B with mlx_lm.lora on my MacBook Pro with 32GB RAM: it runs out of memory after a few steps.",
    "LoRA training on an M3 Max (36 GB of RAM) and the RAM is full, then it crashes.",
    "[METAL] Command buffer execution failed: Insufficient Memory. My Mac mini has 16GB RAM.",
    "RuntimeError: MPS backend out of memory (MPS allocated: 17.50 GB, other allocations: 1.20 MB, max allowed: "
    "18.10 GB). Tried to allocate 512.00 MB on private pool. Training on an M2 with 24GB RAM.",
])
def test_ram_on_apple_unified_memory_is_the_gpus_memory(text):
    assert host_memory_named(text) is False
    d = _d(text)
    assert d.case.oom.kind == "cuda"
    assert d.primary.id != "cpu_ram" and all(f.id not in ("more_ram", "low_cpu_mem") for f in d.fixes[:1])


@pytest.mark.parametrize("text", [
    "Fine-tuning a 7B with LoRA on a Linux box with 32GB RAM: it runs out of memory on RAM while loading.",
    "OOM with 64G ram while tokenizing",
])
def test_ram_on_a_machine_with_its_own_gpu_memory_stays_host_ram(text):
    assert _d(text).primary.id == "cpu_ram"
