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
