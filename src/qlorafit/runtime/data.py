"""Training data: read records, render them to text, tokenize with loss masks, split, measure, order.

    file / cached dataset -> records (each knows its file line) -> segments (text, is_target) -> Sample(id, ids, labels)

Every mistake in the input is a UserError naming the file, the line (or record) and the field. Nothing here imports
torch: the tokenizer is passed in, and the statistics and the epoch order are plain Python the planner can call.
"""

import csv
import json
import os
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from qlorafit.core.config import DataConfig
from qlorafit.errors import UserError

IGNORE = -100  # label of a token that takes no loss (prompt with completion_only, padding, packed sample starts)
DEMO_DATA = "qlorafit/demo"
FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
# Used when the tokenizer has no chat template. It is prefix-stable (rendering more turns only appends text), which
# is what lets completion_only find the assistant turns; the demo tokenizer ships the same template.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
NEEDS = {"text": "{text_field}", "alpaca": "instruction, output", "messages": "messages",
         "prompt_completion": "prompt, completion"}


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
    raw_stats: LengthStats  # before truncation: what the planner needs to pick max_seq_length
    dropped: int = 0        # samples left with no target token (e.g. a prompt longer than max_seq_length)
    empty: list = field(default_factory=list)  # where the records with an empty target text are (skipped)

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

def resolve_data_path(path: str) -> str:
    """'qlorafit/demo' -> the JSONL shipped in the package; anything else unchanged."""
    if path == DEMO_DATA:
        return str(Path(__file__).resolve().parents[1] / "assets" / "demo_train.jsonl")
    return path


def read_records(path: str, split: str = "train") -> tuple[list[Record], str]:
    """Records of a local file (by extension) or of a datasets dataset in the local cache; and a source label."""
    path = resolve_data_path(path)
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"data.path: {p} is a directory; give a {'/'.join(FILE_TYPES)} file")
    if p.is_file():
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
        if p.suffix.lower() not in readers:
            raise UserError(f"data.path: {p}: unknown file type '{p.suffix}'; use one of {', '.join(FILE_TYPES)}")
        try:
            records = readers[p.suffix.lower()](p)
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None
        source = str(p)
    elif p.suffix.lower() in FILE_TYPES or path.startswith((".", "/", "~")):
        raise UserError(f"data.path: no such file: {p}")
    else:
        records, source = _read_cached_dataset(path, split), f"{path}[{split}]"
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
        raise UserError(f"{p}: cannot read as parquet: {str(e).splitlines()[0]}") from None
    return [Record(i, f"{p} row {i + 1}", r) for i, r in enumerate(rows)]


def _read_cached_dataset(name: str, split: str) -> list[Record]:
    # A Hub dataset id goes through `datasets`, which follows the user's HF_HUB_OFFLINE / HF_DATASETS_OFFLINE,
    # HF_TOKEN, HF_HOME and HF_ENDPOINT: downloaded once when online, read from its cache when offline.
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # DatasetNotFoundError, ConnectionError, ValueError (split) ...: all mean "not usable here"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
                      for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        where = "from the local cache (offline mode is set)" if offline else "as a Hub dataset"
        raise UserError(f"data.path: '{name}' is not a local file, and datasets could not load it {where} "
                        f"(split '{split}'): {first}") from None
    return [Record(i, f"{name}[{split}] record {i + 1}", dict(r)) for i, r in enumerate(ds)]


# ---- rendering: record -> [(text, is_target)] ------------------------------------------------------------------------

def detect_format(rec: Record, text_field: str) -> str:
    f = rec.fields
    if "messages" in f:
        return "messages"
    if "instruction" in f and "output" in f:
        return "alpaca"
    if "prompt" in f and "completion" in f:
        return "prompt_completion"
    if text_field in f:
        return "text"
    raise UserError(f"{rec.where}: cannot tell the format from the fields ({', '.join(map(str, f)) or 'none'}); "
                    f"expected 'messages', 'instruction'+'output', 'prompt'+'completion' or '{text_field}' "
                    f"(or set data.format / data.text_field)")


def _text(rec: Record, name: str, fmt: str, cfg: DataConfig, required: bool = True) -> str:
    if name not in rec.fields or rec.fields[name] is None:
        if not required:
            return ""
        needs = NEEDS[fmt].format(text_field=cfg.text_field)
        have = ", ".join(map(str, rec.fields)) or "none"
        raise UserError(f"{rec.where}: no '{name}' field (format {fmt} needs {needs}; this record has {have})")
    v = rec.fields[name]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise UserError(f"{rec.where}: field '{name}' should be text, got {type(v).__name__}")
    return v


def segments(rec: Record, fmt: str, cfg: DataConfig, tokenizer) -> list[tuple[str, bool]]:
    """The record as text pieces, each flagged True where it is a target (completion / assistant turn)."""
    if fmt == "text":
        return [(_text(rec, cfg.text_field, fmt, cfg), True)]  # no prompt: every token is a target
    if fmt == "alpaca":
        instruction, inp = _text(rec, "instruction", fmt, cfg), _text(rec, "input", fmt, cfg, required=False)
        output = _text(rec, "output", fmt, cfg)
        prompt = (ALPACA_PROMPT_INPUT if inp.strip() else ALPACA_PROMPT).format(instruction=instruction, input=inp)
        return [(prompt, False), (output, True)]
    if fmt == "prompt_completion":
        return [(_text(rec, "prompt", fmt, cfg), False), (_text(rec, "completion", fmt, cfg), True)]
    return _chat_segments(rec, _messages(rec), cfg.completion_only, tokenizer)


def _messages(rec: Record) -> list[dict]:
    msgs = rec.fields.get("messages")
    if isinstance(msgs, str):  # CSV cells hold JSON text
        try:
            msgs = json.loads(msgs)
        except json.JSONDecodeError:
            raise UserError(f"{rec.where}: field 'messages' is text but not a JSON list") from None
    if not isinstance(msgs, list) or not msgs:
        raise UserError(f"{rec.where}: field 'messages' should be a non-empty list of {{role, content}}")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UserError(f"{rec.where}: messages[{i}] should have a text 'role' and a text 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def _chat_segments(rec: Record, msgs: list[dict], completion_only: bool, tokenizer) -> list[tuple[str, bool]]:
    template = getattr(tokenizer, "chat_template", None) or FALLBACK_CHAT_TEMPLATE

    def render(part: list[dict], gen: bool) -> str:
        if not part:
            return ""
        return tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=gen, chat_template=template)

    full = render(msgs, False)
    if not completion_only:
        return [(full, True)]
    # Each assistant turn is the text between "history + generation prompt" and "history + that turn".
    out, pos = [], 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start, end = render(msgs[:i], True), render(msgs[: i + 1], False)
        if not (end.startswith(start) and full.startswith(end) and len(start) >= pos):
            raise UserError(f"{rec.where}: the chat template renders earlier turns differently as the conversation "
                            f"grows, so assistant turns cannot be located; set data.completion_only: false")
        out += [(full[pos:len(start)], False), (full[len(start):len(end)], True)]
        pos = len(end)
    out.append((full[pos:], False))
    return [(t, target) for t, target in out if t]


# ---- tokenizing ----------------------------------------------------------------------------------------------------

def _bos_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer itself puts in front of a text (Llama: [bos]; Qwen: []), without a trailing eos."""
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return [i for i in ids if i != tokenizer.eos_token_id]


def tokenize_records(records: list[Record], fmt: str, cfg: DataConfig, tokenizer, source: str) -> TokenizedSet:
    """Tokenize, mask, append eos, truncate to cfg.max_seq_length; drop samples left with no target token."""
    if fmt == "auto":
        fmt = detect_format(records[0], cfg.text_field)
    prefix = [] if fmt == "messages" else _bos_prefix(tokenizer)  # chat templates write their own bos
    eos = tokenizer.eos_token_id
    segs = [segments(r, fmt, cfg, tokenizer) for r in records]
    flat = [t for s in segs for t, _ in s]
    flat_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []  # one batched call: fast
    samples, raw, truncated, dropped, empty, k = [], [], 0, 0, [], 0
    for rec, seg in zip(records, segs):
        if not any(t.strip() for t, target in seg if target):  # nothing to learn but bos and eos
            empty.append(rec.where)
            k += len(seg)
            continue
        ids = list(prefix)
        labels = [IGNORE] * len(prefix) if cfg.completion_only else list(prefix)
        for _, target in seg:
            piece, k = flat_ids[k], k + 1
            ids += piece
            labels += piece if target or not cfg.completion_only else [IGNORE] * len(piece)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)  # the model learns to stop; a target wherever the last piece is
            labels.append(eos if not cfg.completion_only or (seg and seg[-1][1]) else IGNORE)
        raw.append(len(ids))
        if len(ids) > cfg.max_seq_length:
            truncated += 1
            ids, labels = ids[: cfg.max_seq_length], labels[: cfg.max_seq_length]
        if all(x == IGNORE for x in labels[1:]):  # labels[0] is never predicted (the loss shifts by one)
            dropped += 1
            continue
        samples.append(Sample(rec.index, ids, labels, raw[-1]))
    if empty and len(empty) == len(records):
        raise UserError(f"{source}: every record's text is empty (first: {empty[0]}); nothing to train on")
    if not samples:
        hint = " or set data.completion_only: false" if cfg.completion_only else ""
        raise UserError(f"{source}: no sample has a token left to train on after truncation to "
                        f"data.max_seq_length={cfg.max_seq_length}; raise data.max_seq_length{hint}")
    return TokenizedSet(samples, length_stats([len(s.input_ids) for s in samples]), truncated, source,
                        length_stats(raw), dropped, empty)


def load_data(cfg: DataConfig, tokenizer, seed: int = 0) -> DataSplits:
    """Train (and eval) sets from cfg. The eval split is a deterministic function of (data, eval_split, seed)."""
    records, source = read_records(cfg.path, cfg.split)
    fmt = cfg.format if cfg.format != "auto" else detect_format(records[0], cfg.text_field)
    if cfg.eval_path:
        eval_records, eval_source = read_records(cfg.eval_path, cfg.split)
        eval_fmt = cfg.format if cfg.format != "auto" else detect_format(eval_records[0], cfg.text_field)
        return DataSplits(tokenize_records(records, fmt, cfg, tokenizer, source),
                          tokenize_records(eval_records, eval_fmt, cfg, tokenizer, eval_source))
    if cfg.eval_split <= 0:
        return DataSplits(tokenize_records(records, fmt, cfg, tokenizer, source), None)
    n_eval = max(1, round(len(records) * cfg.eval_split))
    if n_eval >= len(records):
        raise UserError(f"data.eval_split: {cfg.eval_split} of {len(records)} records leaves nothing to train on")
    picked = list(range(len(records)))
    random.Random(seed).shuffle(picked)
    held = set(picked[:n_eval])
    train = [r for r in records if r.index not in held]
    held_out = [r for r in records if r.index in held]
    return DataSplits(tokenize_records(train, fmt, cfg, tokenizer, source),
                      tokenize_records(held_out, fmt, cfg, tokenizer, f"{source} (eval split)"))


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
