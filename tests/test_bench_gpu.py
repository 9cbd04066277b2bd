"""Plumbing of ``benchmarks/gpu.py`` in ``--quick`` mode on the CPU: the JSON it writes
(keys, positive rates, ratio = remix / plain), never its timings."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import gpu
from benchmarks.methods import METHODS


def _positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and (math.isfinite(value))
    )


def _check_row(row: dict[str, Any], reps: int) -> None:
    for key in ("work", "plain", "remix", "ratio", "pair_ratio", "params", "batch_size"):
        assert _positive(row[key]), (row["level"], key, row[key])
    assert row["unit"] == "samples/s"
    assert row["ratio"] == pytest.approx(row["remix"] / row["plain"])
    assert row["plain"] == pytest.approx(row["work"] / statistics.median(row["plain_seconds"]))
    assert row["remix"] == pytest.approx(row["work"] / statistics.median(row["remix_seconds"]))
    assert len(row["plain_seconds"]) == len(row["remix_seconds"]) == row["reps"] == reps
    assert row["goal"] == 0.99 and row["met"] == (row["ratio"] >= 0.99)
    skip = row["level"].endswith("-skip")
    assert (row["method"], row["mask"]) == (
        ("remix-skip", "drop") if skip else ("remix-online", "zeros")
    )
    assert METHODS[row["method"]]["scoring"] == "online"
    assert row["model"] == ("TinyNet" if row["level"].startswith("tiny") else "AVResNet")
    assert row["device"] == "cpu" and row["amp"] is False
    for side in ("plain", "remix"):  # no CUDA, nothing to count
        assert row["syncs"][side] == {"syncs_per_step": None, "syncs": None, "steps": None}


def test_quick_run_writes_every_field_of_both_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "gpu.json"
    result = gpu.main(["--quick", "--levels", "tiny,cnn-skip", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["benchmark"] == "gpu" and _positive(saved["seconds"])
    assert saved["machine"]["torch"] == torch.__version__
    assert saved["config"]["device"] == "cpu" and saved["config"]["workers"] == 0
    assert [row["level"] for row in saved["levels"]] == ["tiny", "cnn-skip"]
    for row in saved["levels"]:
        _check_row(row, saved["config"]["reps"])
    cnn = saved["levels"][1]
    assert cnn["params"] > saved["levels"][0]["params"]
    printed = capsys.readouterr().out
    assert "syncs/step remix" in printed and "cnn-skip" in printed and str(out) in printed


def test_quick_run_with_workers_and_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = gpu.main(["--quick", "--levels", "tiny-skip", "--workers", "2", "--out", str(out)])
    (row,) = result["levels"]
    _check_row(row, result["config"]["reps"])
    assert row["num_workers"] == 2
    with pytest.raises(SystemExit):
        gpu.main(["--quick", "--levels", "nope", "--out", str(out)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA"):
            gpu.main(["--levels", "tiny", "--out", str(out)])
