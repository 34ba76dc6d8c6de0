"""Samples -> batches of tensors: right-padded batches, or packed rows whose sample boundaries are passed to attention.

Packed batches say where each sample starts and ends, as transformers' DataCollatorWithFlattening does, instead of
leaving transformers to infer it from position_ids (which it calls "not the preferred approach", and which linear-
attention layers do not read):
  flash-attention  the rows are flattened to one (1, N) row with cu_seq_lens_q/k and max_length_q/k: the varlen
                   kernel attends within each sample; no padding, no mask.
  sdpa / eager     a block-diagonal causal mask (B, 1, T, T), bool for sdpa, additive in the compute dtype for eager:
                   B x T x T bytes for sdpa, the same mask transformers would build itself from position_ids, so
                   memory is what the estimator models for packing.
Positions restart at 0 for every sample in both cases (RoPE sees each sample as if alone).
"""

from dataclasses import dataclass, field

import torch

from qlorafit.runtime.data import IGNORE, Sample


def _padded(rows: list, value: int) -> torch.Tensor:
    """Lists of ints right-padded with `value` to the longest: (B, T) long."""
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], batch_first=True,
                                           padding_value=value)


def collate(samples: list[Sample], pad_id: int) -> dict:
    """Right-pad to the longest sample: input_ids, labels (IGNORE on padding), attention_mask, each (B, T) long."""
    return {"input_ids": _padded([s.input_ids for s in samples], pad_id),
            "labels": _padded([s.labels for s in samples], IGNORE),
            "attention_mask": _padded([[1] * len(s.input_ids) for s in samples], 0)}


@dataclass
class PackedRow:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)  # 0, 1, ... restarting at each sample
    sample_ids: list[int] = field(default_factory=list)    # Sample.id of each sample in the row, in order


def pack(samples: list[Sample], max_len: int) -> list[PackedRow]:
    """Greedy first-fit: each sample goes into the first row with room, in the given order; every sample once.

    A sample longer than max_len is cut to max_len (the guard may pack shorter rows than max_seq_length).
    """
    rows: list[PackedRow] = []
    room = _FirstFit(len(samples), max_len)
    for s in samples:
        ids, labels = s.input_ids[:max_len], list(s.labels[:max_len])
        r = room.take(len(ids))
        if r == len(rows):
            rows.append(PackedRow())
        row = rows[r]
        if row.input_ids and labels:
            labels[0] = IGNORE  # the shifted loss would predict it from the previous sample's last token
        row.input_ids += ids
        row.labels += labels
        row.position_ids += range(len(ids))
        row.sample_ids.append(s.id)
    return rows


class _FirstFit:
    """Free space per row in a max segment tree: the first row with room for n tokens in O(log rows)."""

    def __init__(self, max_rows: int, capacity: int):
        self.size = 1
        while self.size < max(1, max_rows):
            self.size *= 2
        self.free = [capacity] * (2 * self.size)  # unopened rows count as empty rows of full capacity

    def take(self, n: int) -> int:
        node = 1
        while node < self.size:  # walk down, preferring the left (earlier) row
            node = 2 * node if self.free[2 * node] >= n else 2 * node + 1
        row = node - self.size
        self.free[node] -= n
        node //= 2
        while node:
            self.free[node] = max(self.free[2 * node], self.free[2 * node + 1])
            node //= 2
        return row


def collate_packed(rows: list[PackedRow], pad_id: int = 0, attn: str = "sdpa", dtype=None) -> dict:
    """input_ids, labels, position_ids, and the sample boundaries for the attention implementation `attn`.

    Shorter rows are right-padded; the padding is a segment of its own (it attends only to itself) with IGNORE labels.
    """
    if "flash" in attn:
        return _flattened(rows)
    width = max(len(r.input_ids) for r in rows)
    input_ids, labels = _padded([r.input_ids for r in rows], pad_id), _padded([r.labels for r in rows], IGNORE)
    position_ids = _padded([r.position_ids + list(range(width - len(r.input_ids))) for r in rows], 0)  # (B, T)
    segment = (position_ids == 0).cumsum(-1)  # (B, T) sample number within the row; padding is one more
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T) bool: B x T x T bytes
    mask = (same & torch.ones(width, width, dtype=torch.bool).tril())[:, None]  # (B, 1, T, T): causal, per sample
    if attn == "eager":  # eager adds the mask to the scores
        dt = dtype or torch.float32
        mask = torch.zeros(mask.shape, dtype=dt).masked_fill(~mask, torch.finfo(dt).min)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": mask}


def _flattened(rows: list[PackedRow]) -> dict:
    """All rows as one (1, N) sequence with flash-attention varlen boundaries (cu_seq_lens), as
    DataCollatorWithFlattening(return_flash_attn_kwargs=True) builds them."""
    ids, labels, pos, cu = [], [], [], [0]
    for r in rows:
        row_labels = list(r.labels)
        if row_labels:
            row_labels[0] = IGNORE  # flattened, it would be predicted from the previous row's last token
        ids += r.input_ids
        labels += row_labels
        pos += r.position_ids
        starts = [i for i, p in enumerate(r.position_ids) if p == 0] + [len(r.input_ids)]
        for a, b in zip(starts, starts[1:]):
            cu.append(cu[-1] + b - a)
    lengths = [b - a for a, b in zip(cu, cu[1:])]
    return {"input_ids": torch.tensor([ids], dtype=torch.long), "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([pos], dtype=torch.long),
            "cu_seq_lens_q": torch.tensor(cu, dtype=torch.int32), "cu_seq_lens_k": torch.tensor(cu, dtype=torch.int32),
            "max_length_q": max(lengths), "max_length_k": max(lengths)}
