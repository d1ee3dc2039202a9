"""Preemption-safe training: SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler or a cloud
preemption sends first) end a run cleanly after the current step, with a checkpoint of it.

    with preemption.stop_requests() as stop:
        for step in ...:
            ...train step, checkpoint...
            if stop.signum is not None:
                ...save a checkpoint of this step...
                raise preemption.Preempted(stop.signum, step)

The handler only records the signal, so the step under way (and a checkpoint being written) is
finished first; a second signal interrupts at once (KeyboardInterrupt), which orbax's atomic
saves survive. Outside the main thread (where Python cannot install handlers) nothing is caught.
"""

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Preempted(Exception):
    """Training stopped at a signal, after saving a checkpoint of `step`.

    Attributes:
        signum: the signal received.
        step: the train steps taken (the checkpoint's step).
    """

    def __init__(self, signum: int, step: int):
        self.signum, self.step = int(signum), int(step)
        name = signal.Signals(self.signum).name
        super().__init__(f"stopped by {name} after step {step}; a checkpoint of it is saved")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


@dataclasses.dataclass
class StopRequest:
    """`signum`: the first stop signal received inside `stop_requests`, or None."""

    signum: int | None = None


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Records SIGINT / SIGTERM in the yielded `StopRequest` instead of ending the process; the
    previous handlers are back afterwards."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum, frame):
        if request.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        request.signum = signum

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
