"""Data side of `qlorafit train`: formats, masks, truncation, bad input, order, packing, the offline demo assets."""

import copy
import csv
import json
import subprocess
import sys

import pytest

from qlorafit.core.config import DataConfig
from qlorafit.runtime.data import (IGNORE, LengthStats, Sample, epoch_order, length_stats, load_data, read_records,
                           tokenize_records)
from qlorafit.errors import UserError


@pytest.fixture(scope="module")
def tok():
    from qlorafit.demo_assets import demo_tokenizer
    return demo_tokenizer()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def load(tok, path, **kw):
    return load_data(DataConfig(path=path, **kw), tok).train


# ---- formats and masks -----------------------------------------------------------------------------------------------

def test_text_format_trains_on_everything_with_bos_and_eos(tok, tmp_path):
    s = load(tok, write_jsonl(tmp_path / "t.jsonl", [{"text": "Paris is in France."}]), completion_only=True).samples[0]
    assert s.input_ids == [tok.bos_token_id] + ids(tok, "Paris is in France.") + [tok.eos_token_id]
    assert s.labels[1:] == s.input_ids[1:] and s.id == 0


def test_custom_text_field(tok, tmp_path):
    s = load(tok, write_jsonl(tmp_path / "t.jsonl", [{"body": "hello"}]), text_field="body").samples[0]
    assert s.input_ids[1:-1] == ids(tok, "hello")


@pytest.mark.parametrize("rec,prompt,completion", [
    ({"instruction": "Name a day.", "input": "", "output": "Monday."},
     "### Instruction:\nName a day.\n\n### Response:\n", "Monday."),
    ({"instruction": "Convert.", "input": "3 kg", "output": "3000 grams."},
     "### Instruction:\nConvert.\n\n### Input:\n3 kg\n\n### Response:\n", "3000 grams."),
    ({"prompt": "2 plus 2 is", "completion": " 4."}, "2 plus 2 is", " 4."),
])
def test_prompt_formats_mask_exactly_the_prompt(tok, tmp_path, rec, prompt, completion):
    tok = copy.deepcopy(tok)
    tok.chat_template = None  # alpaca without a chat template: the documented prompt
    path = write_jsonl(tmp_path / "d.jsonl", [rec])
    p, c = [tok.bos_token_id] + ids(tok, prompt), ids(tok, completion) + [tok.eos_token_id]
    s = load(tok, path, completion_only=True).samples[0]
    assert s.input_ids == p + c
    assert s.labels == [IGNORE] * len(p) + c
    full = load(tok, path, completion_only=False).samples[0]
    assert full.input_ids == p + c and full.labels == p + c


def chat(tok):
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"},
            {"role": "assistant", "content": "Lima."}, {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "Welcome."}]


@pytest.mark.parametrize("template", ["own", "fallback"])
def test_messages_completion_only_labels_only_assistant_turns(tok, tmp_path, template):
    t = tok if template == "own" else copy.deepcopy(tok)
    if template == "fallback":
        t.chat_template = None
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": chat(tok)}])
    s = load(t, path, completion_only=True).samples[0]
    pieces = [("<s><|system|>\nBe brief.\n<|user|>\nCapital of Peru?\n<|assistant|>\n", False), ("Lima.</s>", True),
              ("<|user|>\nThanks\n<|assistant|>\n", False), ("Welcome.</s>", True)]
    want_ids, want_labels = [], []
    for text, target in pieces:
        want_ids += ids(tok, text)
        want_labels += ids(tok, text) if target else [IGNORE] * len(ids(tok, text))
    assert s.input_ids == want_ids and s.labels == want_labels
    assert s.input_ids.count(tok.bos_token_id) == 1 and s.input_ids[-1] == tok.eos_token_id  # no doubled bos/eos
    assert load(t, path, completion_only=False).samples[0].labels == want_ids


def test_auto_detects_each_format_and_explicit_format_overrides(tok, tmp_path):
    from qlorafit.runtime.data import detect_format
    recs = read_records(write_jsonl(tmp_path / "m.jsonl", [
        {"messages": chat(tok)}, {"instruction": "a", "output": "b"}, {"prompt": "a", "completion": "b"},
        {"text": "a"}]))[0]
    assert [detect_format(r, "text") for r in recs] == ["messages", "alpaca", "prompt_completion", "text"]
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "t", "prompt": "p", "completion": "c"}])
    assert load(tok, path, format="text").samples[0].input_ids[1:-1] == ids(tok, "t")


def test_json_csv_parquet_readers(tok, tmp_path):
    rows = [{"prompt": "one", "completion": " 1"}, {"prompt": "two", "completion": " 2"}]
    want = [s.input_ids for s in load(tok, write_jsonl(tmp_path / "a.jsonl", rows)).samples]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["prompt", "completion"])
        w.writeheader()
        w.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.json", "b.json", "a.csv", "a.parquet"):
        got = load(tok, str(tmp_path / name)).samples
        assert [s.input_ids for s in got] == want and [s.id for s in got] == [0, 1], name


# ---- truncation and statistics -----------------------------------------------------------------------------------------

def test_truncation_is_counted_and_raw_lengths_kept(tok, tmp_path):
    rows = [{"text": "word " * 40}, {"text": "short"}, {"text": "word " * 30}]
    ts = load(tok, write_jsonl(tmp_path / "t.jsonl", rows), max_seq_length=16)
    raw = [1 + len(ids(tok, r["text"])) + 1 for r in rows]
    assert ts.truncated == 2
    assert max(raw) > 16
    assert ts.stats.max == 16 and ts.lengths == [16, raw[1], 16]
    assert [s.raw_length for s in ts.samples] == raw


def test_length_stats():
    assert length_stats([]) == LengthStats(0, 0, 0, 0.0)
    assert length_stats([3, 1, 2]) == LengthStats(3, 3, 3, 2.0)
    s = length_stats(list(range(1, 201)))  # nearest rank: ceil(0.99 * 200) = 198th value
    assert (s.count, s.max, s.p99, s.mean) == (200, 200, 198, 100.5)


def test_sample_without_targets_after_truncation_is_dropped(tok, tmp_path):
    rows = [{"prompt": "a long prompt " * 10, "completion": " x"}, {"prompt": "hi", "completion": " there"}]
    ts = load(tok, write_jsonl(tmp_path / "d.jsonl", rows), completion_only=True, max_seq_length=8)
    assert ts.dropped == 1 and [s.id for s in ts.samples] == [1]


def test_eval_split_is_deterministic_and_disjoint(tok):
    a = load_data(DataConfig(eval_split=0.2), tok, seed=3)
    b = load_data(DataConfig(eval_split=0.2), tok, seed=3)
    c = load_data(DataConfig(eval_split=0.2), tok, seed=4)
    ev, tr = {s.id for s in a.eval.samples}, {s.id for s in a.train.samples}
    assert ev == {s.id for s in b.eval.samples} and ev != {s.id for s in c.eval.samples}
    assert not ev & tr and len(ev | tr) == 324 and len(ev) == round(324 * 0.2)


def test_eval_path(tok, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "x"}, {"text": "y"}])
    splits = load_data(DataConfig(eval_path=path), tok)
    assert splits.eval.stats.count == 2 and splits.train.stats.count == 324


# ---- bad input -------------------------------------------------------------------------------------------------------

def error(tok, path, **kw):
    with pytest.raises(UserError) as e:
        load(tok, path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_missing_file(tok, tmp_path):
    assert "no such file" in error(tok, str(tmp_path / "nope.jsonl"))


def test_malformed_jsonl_names_the_line(tok, tmp_path):
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n\n{"text": "fine"}\n{"text": broken}\n')
    msg = error(tok, str(tmp_path / "b.jsonl"))
    assert "b.jsonl line 4" in msg and "malformed JSON" in msg


def test_malformed_json_names_the_line(tok, tmp_path):
    (tmp_path / "b.json").write_text('[\n{"text": "ok"},\n{"text" "x"}\n]')
    assert "b.json line 3" in error(tok, str(tmp_path / "b.json"))


def test_missing_field_names_line_and_field(tok, tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    ts = load(tok, path, format="alpaca")  # a bad record is dropped and reported, the rest trains
    assert ts.stats.count == 1 and len(ts.bad) == 1
    assert "m.jsonl line 2" in ts.bad[0][1] and "'output'" in ts.bad[0][1]
    (tmp_path / "c.csv").write_text("prompt,completion\na,b\nc,\n")  # an empty completion: skipped and named
    got = load(tok, str(tmp_path / "c.csv"))
    assert got.stats.count == 1 and got.empty == [f"{tmp_path / 'c.csv'} line 3"]
    (tmp_path / "d.csv").write_text("prompt\na\n")
    assert "d.csv line 2" in error(tok, str(tmp_path / "d.csv"), format="prompt_completion")


def test_wrong_field_type_and_bad_messages(tok, tmp_path):
    assert "'text' should be text" in error(tok, write_jsonl(tmp_path / "a.jsonl", [{"text": ["x"]}]))
    msg = error(tok, write_jsonl(tmp_path / "b.jsonl", [{"messages": [{"role": "user"}]}]))
    assert "b.jsonl line 1" in msg and "messages[0]" in msg


def test_undetectable_format_names_the_fields(tok, tmp_path):
    msg = error(tok, write_jsonl(tmp_path / "u.jsonl", [{"question": "q", "answer": "a"}]))
    assert "u.jsonl line 1" in msg and "question" in msg and "data.format" in msg


def test_empty_dataset(tok, tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    assert "empty" in error(tok, str(tmp_path / "e.jsonl"))
    (tmp_path / "e.json").write_text("[]")
    assert "empty" in error(tok, str(tmp_path / "e.json"))


def test_every_sample_empty_after_truncation(tok, tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"prompt": "long prompt " * 20, "completion": " x"}])
    msg = error(tok, path, completion_only=True, max_seq_length=4)
    assert "data.max_seq_length=4" in msg and "completion_only" in msg


def test_unknown_extension_and_directory(tok, tmp_path):
    (tmp_path / "d.txt").write_text("hello")
    assert "unknown file type '.txt'" in error(tok, str(tmp_path / "d.txt"))
    (tmp_path / "empty").mkdir()
    assert "directory datasets cannot read" in error(tok, str(tmp_path / "empty"))


def test_dataset_name_not_in_local_cache(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # restored afterwards
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = error(tok, "nobody/no-such-dataset-qlorafit")
    assert "data.path" in msg and "local cache" in msg


# ---- order -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [False, True])
def test_epoch_order_is_a_deterministic_permutation(group):
    lengths = [(i * 37) % 101 + 1 for i in range(503)]
    a = epoch_order(lengths, 4, seed=1, epoch=0, group_by_length=group)
    assert sorted(a) == list(range(503)) and a == epoch_order(lengths, 4, 1, 0, group)
    assert a != epoch_order(lengths, 4, 1, 1, group) and a != epoch_order(lengths, 4, 2, 0, group)
    assert epoch_order([], 4, 1, 0, group) == []


def test_group_by_length_cuts_padding_and_puts_the_longest_first():
    lengths = [(i * 37) % 101 + 1 for i in range(503)]

    def padding(order):
        batches = [order[k:k + 4] for k in range(0, len(order), 4)]
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    grouped = epoch_order(lengths, 4, 1, 0, True)
    assert padding(grouped) < padding(epoch_order(lengths, 4, 1, 0, False)) / 5
    assert lengths[grouped[0]] == max(lengths)


# ---- batching --------------------------------------------------------------------------------------------------------

def test_collate_right_pads():
    from qlorafit.runtime.collate import collate
    b = collate([Sample(0, [1, 5, 6], [IGNORE, 5, 6]), Sample(1, [1, 7], [1, 7])], pad_id=3)
    assert b["input_ids"].tolist() == [[1, 5, 6], [1, 7, 3]]
    assert b["labels"].tolist() == [[IGNORE, 5, 6], [1, 7, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_pack_keeps_every_sample_once_and_restarts_positions():
    from qlorafit.runtime.collate import collate_packed, pack
    samples = [Sample(i, list(range(100 + i, 100 + i + n)), list(range(100 + i, 100 + i + n)))
               for i, n in enumerate([5, 9, 3, 7, 2, 10, 1, 6, 4, 8])]
    rows = pack(samples, 12)
    assert sorted(i for r in rows for i in r.sample_ids) == list(range(10))
    assert all(len(r.input_ids) <= 12 for r in rows) and rows[0].sample_ids[:2] == [0, 2]  # first fit
    for r in rows:
        pos = 0
        for sid in r.sample_ids:
            s = samples[sid]
            n = len(s.input_ids)
            assert r.input_ids[pos:pos + n] == s.input_ids and r.position_ids[pos:pos + n] == list(range(n))
            want = s.labels if pos == 0 else [IGNORE] + s.labels[1:]
            assert r.labels[pos:pos + n] == want
            pos += n
    b = collate_packed(rows, pad_id=0)
    assert set(b) == {"input_ids", "labels", "position_ids", "attention_mask"}
    short = min(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    n = len(rows[short].input_ids)
    assert b["position_ids"][short, n:].tolist() == list(range(b["input_ids"].shape[1] - n))
    assert (b["labels"][short, n:] == IGNORE).all()


def _tiny_llama(attn):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from qlorafit.demo_assets import demo_model_config
    cfg = demo_model_config(vocab_size=64)
    cfg.pop("model_type")
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation=attn)).eval()


def _packed_samples():
    return [Sample(i, [1] + [(7 * i + 3 * k) % 60 + 4 for k in range(n)], [0] * (n + 1))
            for i, n in enumerate([6, 4, 9, 12, 3])]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_unpacked_with_explicit_boundaries(attn):
    """No token attends across samples: each sample's logits in a packed row (two rows, one padded) are its logits
    alone. The boundaries come from the explicit block-diagonal mask, not inferred from position_ids."""
    import torch

    from qlorafit.runtime.collate import collate, collate_packed, pack
    model = _tiny_llama(attn)
    samples = _packed_samples()
    rows = pack(samples, 24)
    assert len(rows) == 2 and len(rows[0].input_ids) != len(rows[1].input_ids)
    batch = collate_packed(rows, 0, attn, torch.float32)
    assert batch["attention_mask"].shape == (2, 1, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    with torch.no_grad():
        # use_cache=False as in training
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        for i, r in enumerate(rows):
            pos = 0
            for sid in r.sample_ids:
                s = samples[sid]
                alone = model(**collate([s], 0), use_cache=False).logits[0]
                torch.testing.assert_close(packed[i, pos:pos + len(s.input_ids)], alone, atol=1e-5, rtol=1e-4)
                pos += len(s.input_ids)
        # the mask is what separates them: without it, and without position resets, the logits change
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits
        assert not torch.allclose(leaky[0, 12:18], packed[0, 12:18], atol=1e-3)


def test_flash_attention_batches_are_flattened_with_cu_seq_lens():
    from qlorafit.runtime.collate import collate_packed, pack
    samples = _packed_samples()
    rows = pack(samples, 20)
    b = collate_packed(rows, 0, "flash_attention_2")
    lengths = [len(samples[i].input_ids) for r in rows for i in r.sample_ids]
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    assert b["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in b
    assert b["cu_seq_lens_q"].tolist() == cu == b["cu_seq_lens_k"].tolist()
    assert b["max_length_q"] == max(lengths) and b["cu_seq_lens_q"].dtype.is_floating_point is False
    starts = cu[:-1]
    assert b["position_ids"][0, starts].tolist() == [0] * len(starts)
    assert all(b["labels"][0, s].item() == IGNORE for s in starts)  # no sample is predicted from another's tokens


def test_data_order_and_stats_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from qlorafit.runtime.data import epoch_order, length_stats, read_records\n"
            "assert sorted(epoch_order([3, 1, 2], 2, 0, 0, True)) == [0, 1, 2]\n"
            "assert length_stats([1, 2]).max == 2\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- demo assets -----------------------------------------------------------------------------------------------------

def test_demo_tokenizer_round_trips_and_is_deterministic(tok):
    from qlorafit.demo_assets import demo_tokenizer
    for text in ["The capital of Peru is Lima.", "Ünïcode ✓ and\ttabs\n  spaces", ""]:
        assert tok.decode(ids(tok, text)) == text
    assert tok("x")["input_ids"][0] == tok.bos_token_id
    assert 256 < len(tok) <= 2048 and len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert demo_tokenizer().backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_demo_data_resolves_to_the_shipped_set(tok):
    ts = load_data(DataConfig(), tok).train
    assert ts.source.endswith("assets/demo_train.jsonl") and ts.stats.count == 324 and ts.truncated == 0


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from qlorafit.core.catalog import resolve_model_path
    return resolve_model_path("qlorafit/tiny-llama", tmp_path_factory.mktemp("cache"))


def test_demo_model_loads_in_nf4_on_cpu_and_runs(demo_dir, tok):
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from qlorafit.runtime.collate import collate
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                           bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(demo_dir, quantization_config=q, device_map={"": "cpu"},
                                                 dtype=torch.bfloat16)
    proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(proj, bnb.nn.Linear4bit) and proj.weight.quant_state.quant_type == "nf4"
    loaded_tok = AutoTokenizer.from_pretrained(demo_dir)
    assert loaded_tok.get_vocab() == tok.get_vocab() and loaded_tok.chat_template == tok.chat_template
    batch = collate(load_data(DataConfig(), loaded_tok).train.samples[:2], loaded_tok.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[-1] == len(tok) and torch.isfinite(out.loss) and 5 < out.loss.item() < 9


def test_demo_model_dir_is_cached_and_names_resolve(demo_dir, tmp_path):
    import os
    from pathlib import Path

    from qlorafit.core.catalog import resolve_model_path
    from qlorafit.demo_assets import demo_model_dir
    mtime = os.stat(Path(demo_dir) / "model.safetensors").st_mtime_ns
    assert demo_model_dir(Path(demo_dir).parent) == Path(demo_dir)
    assert os.stat(Path(demo_dir) / "model.safetensors").st_mtime_ns == mtime
    assert resolve_model_path(demo_dir, tmp_path) == demo_dir  # a local directory is itself
    with pytest.raises(UserError, match="model.name_or_path"):
        resolve_model_path(str(tmp_path), tmp_path)  # no config.json
    with pytest.raises(UserError, match="model.name_or_path: nobody/nothing-here-qlorafit is not in the local Hugging "
                                        "Face cache and HF_HUB_OFFLINE is set"):
        resolve_model_path("nobody/nothing-here-qlorafit", tmp_path)
