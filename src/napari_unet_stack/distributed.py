"""Optional dask.distributed helpers: connecting to a scheduler and storing lazy results.

``--scheduler`` addresses (the CLI's, and `connect`'s):

``tcp://HOST:PORT``
    an existing dask.distributed scheduler (workers must see the input and output paths,
    e.g. on a shared file system);
``local:N``
    a `LocalCluster` of ``N`` worker processes with one thread each, bound to 127.0.0.1
    (nothing is reachable from outside the machine), closed afterwards.

Needs ``pip install 'napari-unet-stack[distributed]'``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["connect", "parse_scheduler", "store"]

_INSTALL_HINT = "dask.distributed is not installed: pip install 'napari-unet-stack[distributed]'"


def parse_scheduler(address: str) -> tuple[str, Any]:
    """``('tcp', 'tcp://host:port')`` or ``('local', n_workers)``; ValueError otherwise.

    >>> parse_scheduler("local:2"), parse_scheduler("tcp://10.0.0.5:8786")
    (('local', 2), ('tcp', 'tcp://10.0.0.5:8786'))
    """
    text = str(address).strip()
    local = re.fullmatch(r"local:(\d+)", text)
    if local:
        n = int(local.group(1))
        if n < 1:
            raise ValueError(f"`--scheduler local:N` needs N >= 1, got {text!r}")
        return "local", n
    if re.fullmatch(r"(tcp|tls)://[^\s:/]+:\d+", text):
        return "tcp", text
    raise ValueError(
        f"scheduler address must be 'tcp://HOST:PORT' (an existing dask.distributed scheduler) "
        f"or 'local:N' (N local worker processes), got {text!r}"
    )


def _import_distributed():
    try:
        import distributed
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return distributed


@contextlib.contextmanager
def connect(address: str, *, timeout: float = 20.0) -> Iterator[Any]:
    """Context manager yielding a `distributed.Client` for ``address`` (see the module doc).

    A ``local:N`` cluster is started here and shut down on exit; a ``tcp://`` scheduler
    is only disconnected from.
    """
    kind, value = parse_scheduler(address)
    distributed = _import_distributed()
    if kind == "local":
        cluster = distributed.LocalCluster(
            n_workers=value, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(value, timeout=timeout)
    except OSError as err:
        raise OSError(f"cannot reach the dask scheduler at {value}: {err}") from err
    try:
        yield client
    finally:
        client.close()


def _store_block(block: np.ndarray, target: Any, region: tuple[slice, ...]) -> int:
    target[region] = block
    return 1


def store(lazy, target: Any, *, client: Any = None,
          progress: Callable[[int, int], None] | None = None) -> None:
    """Compute the dask array ``lazy`` into ``target`` (e.g. a zarr array) one chunk per task.

    Each task writes its own chunk into ``target``, so nothing but task results of a
    few bytes returns to the caller; with a ``client`` the workers write directly (the
    target must be reachable from them: a zarr array on a shared file system).
    ``progress(done, total)`` is called as chunks finish (in completion order). On any
    exception, including KeyboardInterrupt, the outstanding tasks are cancelled.
    """
    import dask

    if tuple(lazy.shape) != tuple(target.shape):
        raise ValueError(f"`target` must have shape {tuple(lazy.shape)}, got {tuple(target.shape)}")
    blocks = lazy.to_delayed().ravel()
    offsets = [np.cumsum((0, *c)) for c in lazy.chunks]
    tasks = []
    for block, index in zip(blocks, np.ndindex(*lazy.numblocks), strict=True):
        region = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index, strict=True))
        tasks.append(dask.delayed(_store_block)(block, target, region))
    total = len(tasks)
    if client is None:
        for done, task in enumerate(tasks, start=1):
            task.compute()
            if progress is not None:
                progress(done, total)
        return
    distributed = _import_distributed()
    futures = client.compute(tasks)
    try:
        for done, future in enumerate(distributed.as_completed(futures), start=1):
            future.result()
            if progress is not None:
                progress(done, total)
    except BaseException:
        client.cancel(futures)
        raise
