"""Fixtures shared by the training tests: one tiny Llama on disk for the whole session, a fresh dataset per test."""

import os

# Tests run offline: a Hub id must never reach huggingface.co (huggingface_hub reads this when first imported, so it is
# set before anything imports it). The Hub tests start their own local Hub and point subprocesses at it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from test_train_helpers import tiny_model_dir, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl")


@pytest.fixture(autouse=True)
def _rules_only_unless_the_module_tests_the_thread_prior(request, monkeypatch):
    """The doctor's tests pin what the rules answer on made-up and captured reports. The thread prior (a word model
    fitted on the public threads' labels, which may overrule the rules' batch/length fallback) is tested on its own
    (test_doctor_thread_prior.py, USES_THREAD_PRIOR = True) and measured out of sample (benchmarks/fit_doctor.py
    prior-cv, and each held-out split's first measurement); elsewhere it is left out, so that a rule test stays one."""
    if not getattr(request.module, "USES_THREAD_PRIOR", False):
        from qlorafit.doctor import thread_prior

        monkeypatch.setattr(thread_prior, "model", lambda: {})
