"""Ctrl-C and SIGTERM while training: finish the step, save a checkpoint, say how to resume.

The first SIGINT or SIGTERM (Ctrl-C; what clusters and preemptible VMs send before they kill) only raises a flag: the
loop checks it at the next step boundary, saves a checkpoint there and stops with `Stopped`. A second signal does
what the signal would have done without qlorafit: SIGINT raises KeyboardInterrupt at once, SIGTERM ends the process
at once (exit 143). Saving is atomic, so a second signal during the save leaves the previous checkpoint intact.
"""

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """Training stopped at a step boundary on a signal, after saving `checkpoint`."""

    def __init__(self, signum: int, step: int, checkpoint: str):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name}: stopped after step {step}; checkpoint {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's code for "ended by this signal": 130 for SIGINT, 143 for SIGTERM


class StopFlag:
    """Set by the first signal; read by the loop at each step boundary."""

    def __init__(self, say=None):
        self.signum: int | None = None
        self.say = say or (lambda text: None)

    def __bool__(self) -> bool:
        return self.signum is not None

    def handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: what it would have done without us, now
            for s in SIGNALS:
                signal.signal(s, signal.SIG_DFL if s != signal.SIGINT else signal.default_int_handler)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        self.say(f"{signal.Signals(signum).name}: saving a checkpoint when this step ends, then stopping "
                 f"(send it again to quit at once)")


@contextmanager
def stop_on_signals(flag: StopFlag):
    """Route SIGINT and SIGTERM to `flag` inside the block (main thread only; elsewhere signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, flag.handle)
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
