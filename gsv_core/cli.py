"""What the command-line tools share: a tqdm bar driven by the services' ``progress(fraction, message)`` callbacks
and a Ctrl-C handler that asks a job to stop at its next safe point (a second Ctrl-C aborts at once)."""
from __future__ import annotations

import signal
import sys
import threading


class ProgressBar:
    """tqdm over 0..1000 driven by (fraction, message) callbacks; ``close()`` when done."""

    def __init__(self, desc: str, leave: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=desc, unit="‰", dynamic_ncols=True, file=sys.stderr, leave=leave)

    def __call__(self, frac: float, msg: str) -> None:
        n = int(round(max(0.0, min(1.0, frac)) * 1000))
        self.bar.update(max(0, n - self.bar.n))
        self.bar.set_postfix_str(str(msg)[-80:], refresh=False)

    def close(self) -> None:
        self.bar.close()


def stop_on_ctrl_c(stop: threading.Event, what: str) -> None:
    """The first Ctrl-C sets ``stop`` and prints ``what`` happens now; the second raises KeyboardInterrupt."""
    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\n{what}; press Ctrl-C again to abort at once", file=sys.stderr)

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (tests calling main())
        pass
