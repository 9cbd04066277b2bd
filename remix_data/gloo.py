"""Start a few CPU ranks on gloo: real ``torch.distributed`` for tests and benchmarks.

:class:`GlooRanks` spawns ``world_size`` processes (``torch.multiprocessing``,
start method ``spawn``), initialises a gloo process group in each over a file
store in a work folder on loopback, runs ``fn(rank, *args)`` and destroys the
group. Every rank runs in a process group of its own, so :meth:`GlooRanks.kill`
ends a rank together with its ``DataLoader`` workers (``SIGKILL``, as a crashed
node or an out-of-memory kill would). :func:`run_ranks` is the one-call form
that waits, raises when a rank fails or the time runs out, and returns what
``fn`` returned on each rank (saved with ``torch.save`` in the work folder).

``fn`` must be importable by the spawned processes (a module-level function).
One intra-op thread per rank: the ranks share the machine's cores as separate
single-threaded trainers would. Inside a rank, new processes (``DataLoader``
workers) start with the platform's default method, as under ``torchrun``.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     results = run_ranks(my_rank_function, 2, tmp, "some argument", timeout=60)
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import start_processes

__all__ = ["GlooRanks", "init_gloo", "run_ranks"]

_launches = itertools.count()


def init_gloo(rank: int, world_size: int, store: str | Path, *, timeout: float = 60.0) -> None:
    """Join a gloo group of ``world_size`` ranks over the file store ``store`` (loopback)."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout),
    )


def _entry(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    store: str,
    args: tuple[Any, ...],
    timeout: float,
) -> None:
    os.setpgid(0, 0)  # a process group per rank: killing it ends its DataLoader workers too
    # ``spawn`` made this process; its own children (DataLoader workers) start the
    # platform's default way again, as under ``torchrun``.
    multiprocessing.set_start_method(None, force=True)
    init_gloo(rank, world_size, store, timeout=timeout)
    try:
        result = fn(rank, *args)
    finally:
        dist.destroy_process_group()
    torch.save(result, _result_path(store, rank))
    # The result is saved: leave without the interpreter's teardown, where a native
    # thread still joinable at exit has aborted a rank ("terminate called without an
    # active exception", SIGABRT) after its work was done and saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _result_path(store: str | Path, rank: int) -> Path:
    return Path(f"{store}-rank{rank}.pt")


class GlooRanks:
    """``world_size`` spawned processes running ``fn(rank, *args)`` in one gloo group.

    Args:
        fn: a module-level function ``fn(rank, *args)``.
        world_size: number of ranks.
        workdir: an existing folder for the file store (a fresh store file per
            launch, so one folder serves several launches).
        args: more arguments for ``fn``.
        timeout: the process group's timeout in seconds (a collective that
            waits longer raises in the ranks).

    Use it as a context manager: leaving the block kills every rank still alive.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        world_size: int,
        workdir: str | Path,
        args: tuple[Any, ...] = (),
        *,
        timeout: float = 60.0,
    ) -> None:
        store = Path(workdir) / f"gloo-store-{os.getpid()}-{next(_launches)}"
        self.store = store
        self.context = start_processes(  # type: ignore[no-untyped-call]
            _entry,
            args=(fn, world_size, str(store), tuple(args), timeout),
            nprocs=world_size,
            join=False,
            start_method="spawn",
        )

    @property
    def processes(self) -> list[Any]:
        """The rank processes, rank order."""
        return list(self.context.processes)

    def join(self, timeout: float) -> None:
        """Wait for every rank to finish; raise if one failed or ``timeout`` s pass.

        A rank's exception re-raises here with its traceback
        (``torch.multiprocessing.ProcessRaisedException``); a rank killed by a
        signal raises ``ProcessExitedException``. On timeout every rank is
        killed and ``TimeoutError`` is raised.
        """
        deadline = time.monotonic() + timeout
        while not self.context.join(timeout=0.5):
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"the ranks did not finish within {timeout:.0f} s")

    def results(self) -> list[Any]:
        """What ``fn`` returned on each rank, rank order (after :meth:`join`).

        Loaded with ``torch.load(weights_only=False)``: only for results of
        ranks this process started.
        """
        return [
            torch.load(_result_path(self.store, r), weights_only=False)
            for r in range(len(self.processes))
        ]

    def kill(self) -> None:
        """``SIGKILL`` every live rank and its process group, and reap them."""
        for proc in self.processes:
            if proc.is_alive():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):  # not a group leader yet
                    proc.kill()
        for proc in self.processes:
            proc.join(timeout=10)

    def __enter__(self) -> GlooRanks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def run_ranks(
    fn: Callable[..., Any],
    world_size: int,
    workdir: str | Path,
    *args: Any,
    timeout: float = 120.0,
    group_timeout: float = 60.0,
) -> list[Any]:
    """Run ``fn(rank, *args)`` on ``world_size`` gloo ranks, wait, and return each rank's
    result (see :class:`GlooRanks`)."""
    with GlooRanks(fn, world_size, workdir, args, timeout=group_timeout) as ranks:
        ranks.join(timeout)
        return ranks.results()
