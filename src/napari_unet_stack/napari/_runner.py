"""What the Predict and Train dock widgets share: run one job at a time in a napari thread
worker, show its progress, cancel it, and tidy up when it finishes.

`WorkerDock` is their base. A subclass builds a job (anything with a ``cancel`` event, a
``stopped`` reason and a ``close()`` that closes its generator) and calls `WorkerDock._start`
with the worker body (a generator of `_jobs`); it handles the worker's events in
`_on_progress` (calling `_advance` last), `_on_returned` and `_on_aborted`, and gives back
what the job borrowed in `_release`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, Label, PushButton
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEventLoop, Qt

from ._lifetime import watch_closing

__all__ = ["WorkerDock"]


class WorkerDock(Container):
    """A dock widget that runs one job at a time in a worker thread (see the module docstring).

    ``start_text`` is the text of the button that starts a job (`start_button`); `cancel_button`
    and `status` are made here too, for the subclass to place.
    """

    #: what a second start while a job runs says
    busy_text = "a run is in progress; cancel it first"

    def __init__(self, viewer: Any, start_text: str):
        super().__init__(labels=True)
        self._viewer = viewer
        self._job: Any = None
        self._pbar = None
        self._on_done: list[Callable[[], None]] = []
        self.worker = None
        self._gone = False  # the Qt widget was destroyed (with the viewer, most likely)
        self._closed = False  # taken out of its dock or destroyed
        self.start_button = PushButton(text=start_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="")
        self.cancel_button.changed.connect(lambda: self.cancel())
        self._watcher = watch_closing(self.native, self._on_closed)

    def busy(self) -> bool:
        """Whether a job runs (and say so)."""
        if self.worker is not None:
            show_info(f"napari-unet-stack: {self.busy_text}")
            return True
        return False

    def _not_started(self, err: BaseException) -> None:
        """Say why a job could not start (a notification and the status line)."""
        show_error(f"napari-unet-stack: {err}")
        self.status.value = f"not started: {err}"

    def _start(self, body: Callable, job: Any, *, desc: str, total: int | None, status: str):
        """Run ``body(job)`` in a worker thread; returns the worker."""
        self._job = job
        self._closed = False  # docked again, or used from a script
        self.worker = worker = create_worker(body, job, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(lambda _err: self._on_errored(job))
        worker.aborted.connect(job.close, Qt.ConnectionType.DirectConnection)  # in the worker thread
        worker.aborted.connect(self._on_aborted)  # napari's activity dock
        worker.finished.connect(self._on_finished)
        self.start_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = status
        # made before the worker starts: napari's progress bar processes Qt events when it is
        # made, and a bar made in `_on_progress` would let the next events (even `finished`)
        # run first, each making a bar of its own that was never closed
        self._pbar = progress(total=total, desc=desc)
        worker.start()
        return worker

    def wait(self) -> None:
        """Block (processing Qt events) until the current job has finished."""
        if self.worker is None:
            return
        loop = QEventLoop()
        self._on_done.append(loop.quit)
        loop.exec()

    def cancel(self, reason: str | None = None) -> None:
        """Stop the current job; ``reason`` is kept on it (``job.stopped``) for the status."""
        job = self._job
        if job is None or job.cancel.is_set():
            return
        job.stopped = reason
        job.cancel.set()
        if not self._gone:
            self.cancel_button.enabled = False
            self.status.value = "cancelling..."

    def _on_closed(self, destroyed: bool) -> None:
        """The widget left its dock or was destroyed: stop the job (see `_lifetime`)."""
        self._gone = self._gone or destroyed
        self._closed = True
        self.cancel("the widget was closed")

    def _advance(self, done: int, total: int | None) -> None:
        """Move the progress bar to ``done`` of ``total``; call it last in `_on_progress`:
        napari's progress bar processes Qt events (the handler may be re-entered)."""
        pbar = self._pbar
        if pbar is None:
            return
        if pbar.total != total:
            pbar.total = total
        if done > pbar.n:  # a re-entered later event may have been shown already
            pbar.update(done - pbar.n)

    # -- for subclasses ----------------------------------------------------------------
    def _on_progress(self, event) -> None:
        raise NotImplementedError

    def _on_returned(self, outcome) -> None:
        raise NotImplementedError

    def _on_aborted(self) -> None:
        """The activity dock aborted the worker (``worker.quit()``)."""

    def _on_errored(self, job: Any) -> None:
        """The worker body raised (a bug: its traceback is shown by napari)."""

    def _release(self, job: Any) -> None:
        """Give back what ``job`` borrowed (called once it has finished, any way)."""

    def _on_finished(self) -> None:
        job = self._job
        if job is not None:
            self._release(job)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        self._job = None
        if not self._gone:
            self.start_button.enabled = True
            self.cancel_button.enabled = False
        callbacks, self._on_done = self._on_done, []
        for callback in callbacks:
            callback()
