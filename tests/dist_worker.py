"""One rank of a 2-process test run (tests/test_dist.py launches it under torchrun): builds the config from a JSON
spec, injects the faults the spec names on the rank it names, trains."""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from test_train_helpers import make_cfg  # noqa: E402

from qlorafit.runtime.train import train  # noqa: E402


def fault_hook(faults: list, rank: int):
    """OOM (or a crash) on this rank, at a phase/step, for micro-batches of at least min_units units, `times` times."""
    left = [dict(f) for f in faults if f["rank"] == rank]

    def fault(phase, info):
        for f in left:
            if f["times"] and phase == f["phase"] and info.get("step") == f["step"] \
                    and info.get("n_units", 1) >= f.get("min_units", 1) and -1 not in info.get("sample_ids", []):
                f["times"] -= 1
                if f.get("kind") == "crash":
                    raise SystemExit(f"injected crash on rank {rank} at step {f['step']}")
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
    return fault


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    cfg = make_cfg(spec["model_dir"], spec["data"], spec["out"], **spec["sections"])
    rank = int(os.environ.get("RANK", "0"))
    train(cfg, resume=spec.get("resume", False), fault=fault_hook(spec.get("faults", []), rank), quiet=True)


if __name__ == "__main__":
    main()
