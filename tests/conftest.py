"""Fixtures shared by the training tests: one tiny Llama on disk for the whole session, a fresh dataset per test."""

import pytest

from test_train_helpers import tiny_model_dir, write_jsonl


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl")
