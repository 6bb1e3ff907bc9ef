"""Optional dask.distributed helpers: connecting to a scheduler and storing lazy results.

``--scheduler`` addresses (the CLI's, and `connect`'s):

``tcp://HOST:PORT``
    an existing dask.distributed scheduler (workers must see the input and output paths,
    e.g. on a shared file system);
``local:N``
    a `LocalCluster` of ``N`` worker processes with one thread each, bound to 127.0.0.1
    (nothing is reachable from outside the machine), closed afterwards.

Ports are 1..65535. Reaching a ``tcp://`` scheduler gives up after `connect_timeout`
seconds: ``DEFAULT_CONNECT_TIMEOUT``, or the ``UNET_STACK_SCHEDULER_TIMEOUT`` environment
variable, or the CLI's ``--scheduler-timeout``.

Needs ``pip install 'napari-unet-stack[distributed]'``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "SCHEDULER_TIMEOUT_ENV",
    "connect",
    "connect_timeout",
    "parse_scheduler",
    "store",
]

#: seconds to reach a ``tcp://`` scheduler before giving up (dask's own default is 30)
DEFAULT_CONNECT_TIMEOUT = 3.0
#: environment variable overriding `DEFAULT_CONNECT_TIMEOUT`
SCHEDULER_TIMEOUT_ENV = "UNET_STACK_SCHEDULER_TIMEOUT"

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
    remote = re.fullmatch(r"(tcp|tls)://[^\s:/]+:(\d+)", text)
    if remote:
        port = int(remote.group(2))
        if not 1 <= port <= 65535:
            raise ValueError(f"scheduler port must be in 1..65535, got {port} in {text!r}")
        return "tcp", text
    raise ValueError(
        f"scheduler address must be 'tcp://HOST:PORT' (an existing dask.distributed scheduler) "
        f"or 'local:N' (N local worker processes), got {text!r}"
    )


def connect_timeout(value: Any = None, name: str = "timeout") -> float:
    """Seconds to wait for a ``tcp://`` scheduler: ``value`` (a number or its text, called
    ``name`` in errors) if given, else `SCHEDULER_TIMEOUT_ENV`, else the default.

    >>> connect_timeout("1.5")
    1.5
    """
    if value is None:
        value = os.environ.get(SCHEDULER_TIMEOUT_ENV)
        name = SCHEDULER_TIMEOUT_ENV
        if value is None or not value.strip():
            return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return seconds


def _import_distributed():
    try:
        import distributed
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return distributed


@contextlib.contextmanager
def connect(address: str, *, timeout: float | None = None) -> Iterator[Any]:
    """Context manager yielding a `distributed.Client` for ``address`` (see the module doc).

    A ``local:N`` cluster is started here and shut down on exit; a ``tcp://`` scheduler
    is only disconnected from, and one not reached within ``timeout`` seconds (default:
    `connect_timeout`) is an OSError naming it.
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
    timeout = connect_timeout(timeout)
    try:
        client = distributed.Client(value, timeout=timeout)
    except OSError as err:
        raise OSError(
            f"cannot reach the dask scheduler at {value} within {timeout:g} s ({err}); if it is "
            f"slow to answer, allow more with --scheduler-timeout SECONDS or {SCHEDULER_TIMEOUT_ENV}"
        ) from err
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
