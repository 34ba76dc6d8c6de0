"""Reading a pasted error or a whole training log, streamed: a large log is cut down to the lines the doctor reads.

The doctor's parsers look at three places in a log: its head (the trainer's banner: batch size, accumulation, GPU),
its tail (the traceback and the last progress bar) and, anywhere between, a few kinds of line (an OOM message, fp16
overflow signs, distributed-launch markers, phase markers). A log over SMALL_BYTES is read in blocks and only those
are kept, so a 50 MB log costs a few MiB of memory and one regular-expression pass, not a dozen passes over all of
it. A smaller text is returned whole.
"""

from collections import deque

SMALL_BYTES = 2 * 1024**2
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 256 * 1024   # the traceback and the last progress bars: a few KiB in practice
MIDDLE_LINES = 2000   # the newest matching lines kept from between head and tail
BLOCK = 4 * 1024**2

# The text of every line kind the parsers (parse.py, rules.py) can use from the middle of a log. Plain substrings,
# case variants spelled out: str.find runs at memory speed, where one regular expression of 40 alternatives takes
# seconds per 50 MB.
_KEYS = (
    "out of memory", "OutOfMemory", "CUBLAS_STATUS", "CUDNN_STATUS", "cudaMalloc", "bitsandbytes",
    "DefaultCPUAllocator", "allocate", "MemoryError", "Killed", "exitcode", "signal 9", "SIGKILL", "Traceback",
    'File "', "nan", "NaN", "Inf", "inf\n", "inf ", "inf,", "inf'", "verflow", "unscale", "loss scale", "found_inf",
    "atch size", "ccumulation steps", "rainable parameters", "Num GPUs", "Max memory", "GPU memory usage", "[rank",
    "torchrun", "accelerate launch", "torch.distributed", "world_size", "Data Parallel", "Running training",
    "Running Evaluation", "Evaluating", "Loading checkpoint shards", "Merging 4bit", "Saving model", "save_pretrained",
    "merge_and_unload",
)
_LOGGED = "{'loss': "  # a Trainer log line: one is enough to say training had started


def read_log(stream, small: int = SMALL_BYTES, head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES,
             block_bytes: int = BLOCK) -> str:
    """The text of `stream` (a text file object), whole when under `small` characters, else its head, matching middle
    lines and tail, with one line saying how much was left out."""
    head = stream.read(small)
    more = stream.read(block_bytes)
    if not more:
        return head
    cut = head.rfind("\n", 0, head_bytes) + 1 or head_bytes
    head, pending = head[:cut], head[cut:] + more
    middle: deque[str] = deque(maxlen=MIDDLE_LINES)
    skipped = 0
    while True:
        block = stream.read(block_bytes)
        if not block:
            break
        pending += block
        if len(pending) > tail_bytes + block_bytes:  # scan all but the last tail_bytes, on a line boundary
            split = pending.rfind("\n", 0, len(pending) - tail_bytes) + 1
            if split > 0:
                scanned, pending = pending[:split], pending[split:]
                _scan(scanned, middle)
                skipped += scanned.count("\n")
    split = pending.rfind("\n", 0, max(0, len(pending) - tail_bytes)) + 1
    if split > 0:
        _scan(pending[:split], middle)
        skipped += pending[:split].count("\n")
        pending = pending[split:]
    note = f"[qlorafit doctor: {skipped - len(middle):,} of {skipped:,} middle lines of a long log left out]\n"
    return head + "\n".join(middle) + ("\n" if middle else "") + note + pending


def _scan(text: str, middle: deque) -> None:
    """Append the lines of `text` that hold a key, each once and in order, plus the last Trainer loss line."""
    found: dict[int, str] = {}
    for key in _KEYS:
        at = text.find(key)
        while at >= 0:
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            found.setdefault(start, text[start:end])
            at = text.find(key, end)
    at = text.rfind(_LOGGED)
    if at >= 0:
        start = text.rfind("\n", 0, at) + 1
        found.setdefault(start, text[start: text.find("\n", at) % (len(text) + 1)])
    middle.extend(found[k] for k in sorted(found))
