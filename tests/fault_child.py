"""A `qlorafit train` process for the fault-injection tests, with one fault planted: it signals itself (kill -9,
SIGTERM, SIGINT) at a chosen step, or dies half-way through writing a chosen checkpoint file.

    python fault_child.py '{"argv": [...], "signal": 9, "step": 3, "times": 1}'
    python fault_child.py '{"argv": [...], "signal": 9, "save": "step-4", "file": "optimizer.safetensors"}'

The process then runs the real CLI (`qlorafit.cli.main(argv)`): its exit code and stderr are the user's.
"""

import json
import os
import sys


def main() -> int:
    spec = json.loads(sys.argv[1])
    from qlorafit.cli import main as cli_main
    from qlorafit.runtime import checkpoint as C
    from qlorafit.runtime import train as T

    sig = spec["signal"]
    if "step" in spec:  # signal ourselves as this step's forward begins
        real_step = T.train_step

        def train_step(ctx, units, step):
            if step == spec["step"]:
                for _ in range(spec.get("times", 1)):
                    os.kill(os.getpid(), sig)
            return real_step(ctx, units, step)

        T.train_step = train_step
    if "save" in spec:  # die with half of one checkpoint file on disk
        real_write = C._write_bytes

        def write(path, data):
            if path.name == spec["file"] and f".{spec['save']}.tmp-" in str(path):
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), sig)
            real_write(path, data)

        C._write_bytes = write
    return cli_main(spec["argv"])


if __name__ == "__main__":
    sys.exit(main())
