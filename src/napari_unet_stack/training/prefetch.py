"""Patch sampling and augmentation off the critical path: a background thread that keeps a
few batches ready while the network trains on the current one.

The thread is the only user of the sampler's RNG, and it draws the batches in order, so a
seed gives exactly the batches the sampler gives when called in the loop. With each batch
it records the RNG state *after* that batch: the run's resume state is the state after
the last batch *consumed*, not after the ones prefetched.

An error in the thread is raised again in the consumer (the same exception object, so the
type and message are the original ones). `close` stops the thread and waits for it; the
loop closes it whatever way the run ends (finished, cancelled, failed, abandoned).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

__all__ = ["THREAD_NAME", "BatchPrefetcher"]

#: Name of the sampling thread (tests look for leftovers by it).
THREAD_NAME = "napari-unet-stack-patches"
#: Seconds between checks of the stop flag while the queue is full or empty.
_POLL = 0.05


class BatchPrefetcher:
    """Draws ``sampler.batch(batch_size)`` in a background thread, ``depth`` batches ahead.

    Parameters
    ----------
    sampler : PatchSampler
        Anything with ``batch(size) -> (x, y)`` and an ``rng`` (a numpy Generator).
    batch_size : int
        Patches per batch.
    depth : int
        Batches kept ready (the queue's bound: memory stays at ``depth + 1`` batches).
    """

    def __init__(self, sampler: Any, batch_size: int, *, depth: int = 2) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.rng_state: dict | None = None  # after the last batch handed out
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _put(self, item: tuple) -> bool:
        """Queue ``item``; False when stopped first."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                x, y = self.sampler.batch(self.batch_size)
                state = self.sampler.rng.bit_generator.state
                if not self._put(("batch", x, y, state)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(("error", err, None, None))

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch ``(x, y)``; re-raises an error of the sampling thread."""
        while True:
            try:
                kind, first, second, state = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the patch sampling thread stopped") from None
        if kind == "error":
            self.close()
            raise first
        self.rng_state = state
        return first, second

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and wait for it (it finishes the batch it is drawing)."""
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room, should it wait to put a batch
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=_POLL)
            timeout -= _POLL
            if timeout <= 0:  # pragma: no cover - a batch never takes this long
                break
