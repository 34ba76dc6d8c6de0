"""Training data: read records, recognize their format, tokenize with loss masks, split, measure, order.

    file / datasets dataset -> records (each knows its file line) -> formats.to_example -> Plain | Chat
        Plain: text pieces flagged as targets;  Chat: rendered with the chat template, masked by chat_mask
    -> Sample(id, ids, labels)

A record that fits no format, or that the chat template cannot render faithfully (a tool call it would drop), is
dropped and reported with its file and line; the count is in the data summary. Malformed files are a UserError
naming the file and line. Nothing here imports torch: the tokenizer is passed in, and the statistics and the epoch
order are plain Python the planner can call.
"""

import csv
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from qlorafit.core.config import DataConfig
from qlorafit.errors import UserError, first_line
from qlorafit.runtime.chat_mask import ChatTemplate, encode_chat
from qlorafit.runtime.formats import Plain, RecordError, detect_format as _detect, rename_columns, to_example

IGNORE = -100  # label of a token that takes no loss (prompt with completion_only, padding, packed sample starts)
DEMO_DATA = "qlorafit/demo"
FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")

# Used when the tokenizer has no chat template. It is prefix-stable (rendering more turns only appends text), and
# shows tool calls as JSON lines and tools in a system block; the demo tokenizer ships the same template.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if tools %}{{ '<|system|>\\ntools: ' + (tools | tojson) + '\\n' }}{% endif %}"
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + (m['content'] or '') }}"
    "{% for c in (m['tool_calls'] or []) %}{{ '\\n' + ({'name': c['function']['name'], "
    "'arguments': c['function']['arguments']} | tojson) }}{% endfor %}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class LengthStats:
    count: int
    max: int
    p99: int      # nearest-rank 99th percentile: the length the planner sizes activations for
    mean: float


@dataclass
class Sample:
    id: int                # index of the record in its file: stable across runs, logged in the ledger
    input_ids: list[int]
    labels: list[int]      # aligned with input_ids (the loss shifts); IGNORE where no loss is taken
    raw_length: int = 0    # tokens before truncation


@dataclass
class TokenizedSet:
    samples: list[Sample]
    stats: LengthStats      # after truncation: what is trained on
    truncated: int          # samples cut to max_seq_length
    source: str
    dropped: int = 0        # samples left with no target token (e.g. a prompt longer than max_seq_length)
    formats: dict = field(default_factory=dict)  # format name -> records
    bad: list = field(default_factory=list)      # [(where, reason)] of records that fit no format: dropped
    empty: list = field(default_factory=list)    # where the records with an empty target text are (skipped)

    @property
    def lengths(self) -> list[int]:
        return [len(s.input_ids) for s in self.samples]


@dataclass
class DataSplits:
    train: TokenizedSet
    eval: TokenizedSet | None


@dataclass
class Record:
    index: int    # 0-based position in the file: becomes Sample.id
    where: str    # 'data.jsonl line 17' for messages
    fields: dict


def length_stats(lengths: list[int]) -> LengthStats:
    """Count, max, nearest-rank p99 and mean. length_stats([1, 2, 3]) -> LengthStats(3, 3, 3, 2.0)."""
    if not lengths:
        return LengthStats(0, 0, 0, 0.0)
    ordered = sorted(lengths)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return LengthStats(len(ordered), ordered[-1], p99, sum(ordered) / len(ordered))


# ---- reading ------------------------------------------------------------------------------------------------------

def read_records(path: str, split: str = "train") -> tuple[list[Record], str]:
    """Records of a local file (by extension), of a dataset directory (save_to_disk, or a folder of data files), or
    of a datasets dataset on the Hub (id + split; cached by datasets); and a source label."""
    if path == DEMO_DATA:  # the JSONL shipped in the package
        path = str(Path(__file__).resolve().parents[1] / "assets" / "demo_train.jsonl")
    p = Path(path).expanduser()
    if p.is_dir():
        records, source = _read_dataset_dir(p, split), f"{p}[{split}]"
    elif p.is_file():
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
        if p.suffix.lower() not in readers:
            raise UserError(f"data.path: {p}: unknown file type '{p.suffix}'; use one of {', '.join(FILE_TYPES)}, "
                            f"a dataset directory or a Hub dataset id")
        try:
            records = readers[p.suffix.lower()](p)
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None
        source = str(p)
    elif p.suffix.lower() in FILE_TYPES or path.startswith((".", "/", "~")):
        raise UserError(f"data.path: no such file: {p}")
    else:
        records, source = _read_hub_dataset(path, split), f"{path}[{split}]"
    if not records:
        raise UserError(f"{source}: the dataset is empty (no records)")
    return records, source


def _read_jsonl(p: Path) -> list[Record]:
    out = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{p} line {lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{p} line {lineno}: expected a JSON object, got {type(obj).__name__}")
            out.append(Record(len(out), f"{p} line {lineno}", obj))
    return out


def _read_json(p: Path) -> list[Record]:
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{p} line {e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise UserError(f"{p}: expected a JSON list of records or {{\"data\": [...]}}")
    for i, r in enumerate(obj):
        if not isinstance(r, dict):
            raise UserError(f"{p} record {i + 1}: expected a JSON object, got {type(r).__name__}")
    return [Record(i, f"{p} record {i + 1}", r) for i, r in enumerate(obj)]


def _read_csv(p: Path) -> list[Record]:
    """Rows as records keyed by the header; a row with more or fewer cells than the header is an error (a stray
    comma or a missing quote shifts every later column)."""
    out = []
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise UserError(f"{p}: no header row (the first line names the columns, e.g. text)")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise UserError(f"{p} line {reader.line_num}: {len(row)} cells, but the header has {len(header)} "
                                f"({', '.join(header)}); quote cells that hold commas")
            out.append(Record(len(out), f"{p} line {reader.line_num}", dict(zip(header, row))))
    return out


def _read_parquet(p: Path) -> list[Record]:
    import pyarrow.parquet as pq  # comes with datasets

    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"{p}: cannot read as parquet: {first_line(e)}") from None
    return [Record(i, f"{p} row {i + 1}", r) for i, r in enumerate(rows)]


def _read_dataset_dir(p: Path, split: str) -> list[Record]:
    """A directory written by Dataset(Dict).save_to_disk, or a folder of parquet/json/csv files."""
    import datasets

    saved = any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
    try:
        if saved:
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise UserError(f"data.split: {p} has splits {', '.join(ds)}, not '{split}'")
                ds = ds[split]
        else:
            ds = datasets.load_dataset(str(p), split=split)
    except UserError:
        raise
    except Exception as e:  # FileNotFoundError, ValueError (no data files, unknown split) ...
        raise UserError(f"data.path: {p} is a directory datasets cannot read as a dataset (split '{split}'): "
                        f"{first_line(e)}") from None
    return [Record(i, f"{p}[{split}] record {i + 1}", dict(r)) for i, r in enumerate(ds)]


def _read_hub_dataset(name: str, split: str) -> list[Record]:
    # A Hub dataset id goes through `datasets`, which follows the user's HF_HUB_OFFLINE / HF_DATASETS_OFFLINE,
    # HF_TOKEN, HF_HOME and HF_ENDPOINT: downloaded once when online, read from its cache when offline.
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # DatasetNotFoundError, ConnectionError, ValueError (split) ...: all mean "not usable here"
        first = first_line(e)
        offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
                      for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        where = "from the local cache (offline mode is set)" if offline else "as a Hub dataset"
        raise UserError(f"data.path: '{name}' is not a local file, and datasets could not load it {where} "
                        f"(split '{split}'): {first}") from None
    return [Record(i, f"{name}[{split}] record {i + 1}", dict(r)) for i, r in enumerate(ds)]


def detect_format(rec: Record, text_field: str) -> str:
    """The format of one record (see qlorafit.runtime.formats); a UserError naming the record if it fits none."""
    try:
        return _detect(rec.fields, text_field, rec.where)
    except RecordError as e:
        raise UserError(str(e)) from None


# ---- records -> samples ------------------------------------------------------------------------------------------

def chat_template_of(tokenizer, cfg: DataConfig) -> str:
    """data.chat_template (a file or the template text), else the tokenizer's, else qlorafit's fallback."""
    if cfg.chat_template:
        p = Path(cfg.chat_template).expanduser()
        if p.suffix in (".jinja", ".j2", ".txt") or p.is_file():
            if not p.is_file():
                raise UserError(f"data.chat_template: no such file: {p}")
            return p.read_text(encoding="utf-8")
        return cfg.chat_template
    return getattr(tokenizer, "chat_template", None) or FALLBACK_CHAT_TEMPLATE


def _bos_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer itself puts in front of a text (Llama: [bos]; Qwen: []), without a trailing eos."""
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return [i for i in ids if i != tokenizer.eos_token_id]


def _encode(records: list[Record], fmt: str, cfg: DataConfig, tokenizer):
    """(record, ids, labels, format name) for each usable record, and [(where, reason)] for the others."""
    template = chat_template_of(tokenizer, cfg)
    has_template = bool(cfg.chat_template or getattr(tokenizer, "chat_template", None))
    ct = ChatTemplate(tokenizer, template, dict(cfg.chat_template_kwargs))
    plain, out, bad, empty = [], [], [], []
    for rec in _progress(records, "rendering"):
        fields = rename_columns(rec.fields, cfg.columns)
        try:
            f = fmt if fmt != "auto" else _detect(fields, cfg.text_field, rec.where)
            ex = to_example(fields, f, cfg.text_field, rec.where, has_template)
            if _empty_target(ex):  # nothing to learn but the template's tokens
                empty.append(rec.where)
                continue
            if isinstance(ex, Plain):
                plain.append((len(out), ex.segments))
                out.append([rec, None, None, f])
                continue
            ids, mask = encode_chat(ct, ex, rec.where, masks=cfg.completion_only)
        except RecordError as e:
            bad.append((rec.where, str(e)))
            continue
        name = "alpaca (chat template)" if ex.alpaca else f + (" (messages)" if f == "prompt_completion" else "")
        labels = [i if m or not cfg.completion_only else IGNORE for i, m in zip(ids, mask)]
        out.append([rec, ids, labels, name])
    if plain:
        _encode_plain(plain, out, cfg, tokenizer)
    return out, bad, empty


def _empty_target(ex) -> bool:
    if isinstance(ex, Plain):
        return not any(t.strip() for t, target in ex.segments if target)
    turns = [m for i, m in enumerate(ex.messages) if m["role"] == "assistant" and (ex.targets is None or i in ex.targets)]
    return not any(m["content"].strip() or m.get("tool_calls") or str(m.get("reasoning_content") or m.get("thinking")
                                                                      or "").strip() for m in turns)


def _encode_plain(plain: list, out: list, cfg: DataConfig, tokenizer) -> None:
    """Text pieces, tokenized in one batched call: bos (if the tokenizer adds one), the pieces, eos."""
    prefix, eos = _bos_prefix(tokenizer), tokenizer.eos_token_id
    flat = [t for _, seg in plain for t, _ in seg]
    flat_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    k = 0
    for slot, seg in plain:
        ids = list(prefix)
        labels = [IGNORE] * len(prefix) if cfg.completion_only else list(prefix)
        for _, target in seg:
            piece, k = flat_ids[k], k + 1
            ids += piece
            labels += piece if target or not cfg.completion_only else [IGNORE] * len(piece)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)  # the model learns to stop; a target wherever the last piece is
            labels.append(eos if not cfg.completion_only or (seg and seg[-1][1]) else IGNORE)
        out[slot][1], out[slot][2] = ids, labels


def tokenize_records(records: list[Record], fmt: str, cfg: DataConfig, tokenizer, source: str) -> TokenizedSet:
    """Tokenize, mask, truncate to cfg.max_seq_length; drop (and count) records that fit no format and samples left
    with no target token."""
    encoded, bad, empty = _encode(records, fmt, cfg, tokenizer)
    if empty and len(empty) == len(records):
        raise UserError(f"{source}: every record's text is empty (first: {empty[0]}); nothing to train on")
    if not encoded:
        raise UserError(f"no usable record in {source}: {bad[0][1]}" if len(bad) > 1 else bad[0][1])
    samples, truncated, dropped, formats = [], 0, 0, {}
    for rec, ids, labels, name in encoded:
        formats[name] = formats.get(name, 0) + 1
        raw_length = len(ids)
        if len(ids) > cfg.max_seq_length:
            truncated += 1
            ids, labels = ids[: cfg.max_seq_length], labels[: cfg.max_seq_length]
        if all(x == IGNORE for x in labels[1:]):  # labels[0] is never predicted (the loss shifts by one)
            dropped += 1
            continue
        samples.append(Sample(rec.index, ids, labels, raw_length))
    if not samples:
        hint = " or set data.completion_only: false" if cfg.completion_only else ""
        raise UserError(f"{source}: no sample has a token left to train on after truncation to "
                        f"data.max_seq_length={cfg.max_seq_length}; raise data.max_seq_length{hint}")
    return TokenizedSet(samples, length_stats([len(s.input_ids) for s in samples]), truncated, source, dropped,
                        formats, bad, empty)


def describe(ts: TokenizedSet, max_lines: int = 5) -> list[str]:
    """The data summary train prints: formats found, records refused (file and line, why), samples cut or empty."""
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(ts.formats.items(), key=lambda kv: -kv[1]))
    lines = [f"data {ts.source}: {len(ts.samples)} samples ({kinds}); {len(ts.bad)} records dropped, "
             f"{ts.dropped} left with no target token, {ts.truncated} truncated"]
    lines += [f"  dropped: {reason}" for _, reason in ts.bad[:max_lines]]
    if len(ts.bad) > max_lines:
        lines.append(f"  ... and {len(ts.bad) - max_lines} more dropped records")
    return lines


def _progress(items: list, what: str):
    if len(items) < 2000:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=what, unit="rec", leave=False)


def load_data(cfg: DataConfig, tokenizer, seed: int = 0) -> DataSplits:
    """Train (and eval) sets from cfg. The eval split is a deterministic function of (data, eval_split, seed)."""
    records, source = read_records(cfg.path, cfg.split)
    held_out, eval_source = None, f"{source} (eval split)"
    if cfg.eval_path:
        held_out, eval_source = read_records(cfg.eval_path, cfg.split)
    elif cfg.eval_split > 0:
        n_eval = max(1, round(len(records) * cfg.eval_split))
        if n_eval >= len(records):
            raise UserError(f"data.eval_split: {cfg.eval_split} of {len(records)} records leaves nothing to train on")
        picked = list(range(len(records)))
        random.Random(seed).shuffle(picked)
        held = set(picked[:n_eval])
        records, held_out = [r for r in records if r.index not in held], [r for r in records if r.index in held]
    train = tokenize_records(records, cfg.format, cfg, tokenizer, source)
    return DataSplits(train, tokenize_records(held_out, cfg.format, cfg, tokenizer, eval_source) if held_out else None)


# ---- order ---------------------------------------------------------------------------------------------------------

def epoch_order(lengths: list[int], micro_batch_size: int, seed: int, epoch: int,
                group_by_length: bool) -> list[int]:
    """A permutation of range(len(lengths)), the same for the same (seed, epoch) on any machine.

    group_by_length works like HF's LengthGroupedSampler: shuffle, sort by length inside mega-batches of 50
    micro-batches, cut into micro-batches and shuffle those. Similar lengths share a micro-batch, so padding (memory
    and compute spent on nothing) stays small. The longest micro-batch goes first: if anything runs out of memory,
    it does at step 1, not an hour in.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length or not order:
        return order
    mbs = max(1, micro_batch_size)
    mega = 50 * mbs
    chunks = []
    for s in range(0, len(order), mega):
        block = sorted(order[s:s + mega], key=lambda i: -lengths[i])  # stable: ties keep the shuffled order
        chunks += [block[k:k + mbs] for k in range(0, len(block), mbs)]
    tail = chunks.pop() if len(chunks[-1]) < mbs else []  # a short last chunk stays last: boundaries stay aligned
    rng.shuffle(chunks)
    if chunks:
        longest = max(range(len(chunks)), key=lambda c: lengths[chunks[c][0]])
        chunks.insert(0, chunks.pop(longest))
    return [i for c in chunks for i in c] + tail
