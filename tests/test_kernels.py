"""The fused Triton kernel of the device update, run by Triton's interpreter on the CPU.

``TRITON_INTERPRET=1`` must be set before Triton is imported, so the checks run
in a subprocess (``tests/_kernel_checks.py``) and report back as JSON. Skipped
where Triton is not installed (a CPU-only torch does not bring it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="needs triton (pip install triton)"
)


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_kernel_checks.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_kernel_scores_like_torch_and_numpy(report: dict[str, object]) -> None:
    cases = report["scores"]
    assert isinstance(cases, list) and len(cases) >= 24  # every kind, dtype and odd row
    for case in cases:
        assert case["same_nan"], case
        assert case["max_error"] <= (2e-2 if case["dtype"] == "bfloat16" else 2e-5), case


def test_the_kernel_copies_device_indices_and_ids(report: dict[str, object]) -> None:
    assert report["copies"] == {"index": True, "ids": True, "distinct": True}


def test_a_filter_scored_by_the_kernel_writes_the_host_table(report: dict[str, object]) -> None:
    tables = report["tables"]
    assert isinstance(tables, dict) and tables
    for key, same in tables.items():
        assert same, key
