"""Samples -> batches of tensors: right-padded batches, or packed rows with position_ids restarting per sample.

Packed rows carry no attention_mask: from position_ids, transformers 5 builds a block-diagonal causal mask for
sdpa/eager and cu_seqlens for flash-attention varlen, so no token attends across a sample boundary. Only without a
KV cache: call the model with use_cache=False (model.py sets it), else transformers skips the packed mask.
"""

from dataclasses import dataclass, field

import torch

from qlorafit.runtime.data import IGNORE, Sample


def collate(samples: list[Sample], pad_id: int) -> dict:
    """Right-pad to the longest sample: input_ids, labels (IGNORE on padding), attention_mask, each (B, T) long."""
    width = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)     # (B, T)
    attention_mask = torch.zeros((len(samples), width), dtype=torch.long)    # (B, T)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        input_ids[i, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(s.labels, dtype=torch.long)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


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


def collate_packed(rows: list[PackedRow], pad_id: int = 0) -> dict:
    """input_ids, labels, position_ids, each (B, T) long; no attention_mask.

    Shorter rows are right-padded; the padding gets positions restarting at 0, so it is a sequence of its own that
    no real token attends to, and IGNORE labels.
    """
    width = max(len(r.input_ids) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)     # (B, T)
    position_ids = torch.arange(width, dtype=torch.long).repeat(len(rows), 1)  # (B, T)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        input_ids[i, :n] = torch.tensor(r.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(r.labels, dtype=torch.long)
        position_ids[i, :n] = torch.tensor(r.position_ids, dtype=torch.long)
        position_ids[i, n:] = torch.arange(width - n)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
