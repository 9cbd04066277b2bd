"""Shared pieces of the framework tests (Lightning, Accelerate, killed ranks and workers).

- :func:`make_data`: a small classification set of dict samples, one informative
  modality and one mostly noise;
- :class:`LateFusion`: one encoder and head per modality and a fused head over the
  concatenated features, masked with :func:`~remix_data.mask_features` when the
  batch's modality ids are given;
- :func:`run_script` / :func:`script_env` / :func:`free_port` / :func:`torchrun`: a test
  file run again as a subprocess (a DDP worker, a ``torchrun`` worker, a script that kills its own
  ``DataLoader`` worker), with this checkout importable, and the per-rank JSON
  records such workers write (:func:`write_rank`, :func:`read_ranks`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from remix_data import mask_features

__all__ = [
    "NAMES",
    "N",
    "ROOT",
    "LateFusion",
    "free_port",
    "make_data",
    "read_ranks",
    "run_script",
    "script_env",
    "torchrun",
    "write_rank",
]

ROOT = Path(__file__).resolve().parents[1]
#: Modality names and size of the default data set.
NAMES = ("a", "b")
N = 44


def make_data(
    n: int = N,
    *,
    seed: int = 0,
    dims: Mapping[str, int] | None = None,
    shifts: Sequence[float] = (2.0, 0.3),
    classes: int = 2,
) -> list[dict[str, torch.Tensor]]:
    """``n`` samples ``{modality: features, "label": class}``, labels ``i % classes``.

    Modality ``k`` (``dims`` in order, default ``{"a": 4, "b": 3}``) is standard
    normal noise plus ``shifts[k] * label``: the first is informative, the second
    mostly noise. One generator seeded with ``seed`` draws the modalities in order.
    """
    dims = dict(dims or {"a": 4, "b": 3})
    gen = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % classes
    feats = {
        m: torch.randn(n, d, generator=gen) + shift * label.unsqueeze(1)
        for (m, d), shift in zip(dims.items(), shifts, strict=True)
    }
    return [{**{m: feats[m][i] for m in dims}, "label": label[i]} for i in range(n)]


class LateFusion(nn.Module):
    """Encoders (linear + ReLU), one head per modality and a fused head.

    ``forward(sample, modality)`` returns ``(fused logits, {modality: head logits})``;
    with ``modality`` (the batch's modality ids) the inactive modalities' features
    are zeroed first, feature-level masking.
    """

    def __init__(
        self, dims: Mapping[str, int] | None = None, *, hidden: int = 8, classes: int = 2
    ) -> None:
        super().__init__()
        dims = dict(dims or {"a": 4, "b": 3})
        self.names = tuple(dims)
        self.encoders = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in dims.items()})
        self.heads = nn.ModuleDict({m: nn.Linear(hidden, classes) for m in self.names})
        self.fused = nn.Linear(hidden * len(dims), classes)

    def forward(
        self, sample: Mapping[str, torch.Tensor], modality: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = {m: torch.relu(self.encoders[m](sample[m])) for m in self.names}
        if modality is not None:
            feats = mask_features(feats, modality, self.names)
        fused = self.fused(torch.cat([feats[m] for m in self.names], 1))
        return fused, {m: self.heads[m](feats[m]) for m in self.names}


def script_env(**extra: str) -> dict[str, str]:
    """This environment plus: the checkout on ``PYTHONPATH``, one OpenMP thread, gloo on
    loopback, warnings off; ``extra`` last."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "PYTHONWARNINGS": "ignore",
        **extra,
    }


def run_script(
    command: Sequence[str], *, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` from the checkout's root in :func:`script_env` (``env`` added)."""
    return subprocess.run(
        list(command),
        env=script_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def torchrun(script: Path, out: Path, *, processes: int = 2) -> list[str]:
    """The command that runs ``script --worker out`` as ``processes`` torchrun ranks on loopback."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        str(script), "--worker", str(out),
    ]  # fmt: skip


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_rank(folder: Path, rank: int, record: Mapping[str, Any]) -> None:
    """What a worker process reports: ``folder/rank{rank}.json``."""
    (folder / f"rank{rank}.json").write_text(json.dumps(record))


def leave() -> None:
    """End a worker process whose record is written, skipping the interpreter's teardown.

    A native thread still joinable at exit has aborted a finished rank there
    ("terminate called without an active exception", SIGABRT), failing a run whose
    work was done and saved; ``remix_data.gloo`` ends its ranks the same way.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def read_ranks(folder: Path, world: int = 2) -> list[dict[str, Any]]:
    """The records of ranks ``0 .. world - 1`` written by :func:`write_rank`."""
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]
