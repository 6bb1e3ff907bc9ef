"""Termination signals as exceptions, so that a stopped command cleans up like Ctrl-C.

Python turns SIGINT into `KeyboardInterrupt`; SIGTERM (``kill``, job schedulers), SIGHUP
(a closed terminal or SSH session) and the other signals that terminate by default would
kill the process on the spot, leaving the temporary outputs of `io.atomic` behind. While
`terminate_on_signals` is active they raise `Terminated` (a `KeyboardInterrupt`, so every
``except KeyboardInterrupt`` / ``except BaseException`` cleanup runs) instead.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["CAUGHT_SIGNALS", "Terminated", "terminate_on_signals"]

#: signals whose default action ends the process (where the platform has them); SIGINT is
#: Python's own KeyboardInterrupt, SIGKILL and SIGSTOP cannot be caught
CAUGHT_SIGNALS = tuple(
    getattr(signal, name) for name in (
        "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGXCPU", "SIGVTALRM",
        "SIGPROF", "SIGBREAK",
    ) if hasattr(signal, name)
)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives a termination signal.

    Attributes
    ----------
    signum : int
        The signal's number (the exit code is ``128 + signum``).
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"terminated by {self.name}")

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``'SIGTERM'``."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Within the block, `CAUGHT_SIGNALS` raise `Terminated` in the main thread.

    Only signals left at their default action are taken over: one the caller ignores (as
    ``nohup`` ignores SIGHUP) stays ignored, and a handler someone installed stays. The
    first signal raises; repeats are ignored so that the cleanup it starts can finish. The
    previous handlers are restored on exit. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    fired = []

    def handler(signum, _frame):
        if fired:
            return
        fired.append(signum)
        raise Terminated(signum)

    for signum in CAUGHT_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(signum) == signal.SIG_DFL:
                previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
