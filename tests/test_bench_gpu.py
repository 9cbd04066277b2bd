"""Plumbing of ``benchmarks/gpu.py`` in ``--quick`` mode on the CPU: the JSON it writes
(keys, positive rates, ratio = remix / plain), never its timings."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
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


def _check_host_ms(row: dict[str, Any]) -> None:
    """The timed epochs' host split: only remix updates and sets an epoch; steps are whole
    epochs' steps (plain: every sample once, in batches of ``batch_size``)."""
    plain, remix = row["host_ms"]["plain"], row["host_ms"]["remix"]
    assert plain["update_ms"] is None and _positive(remix["update_ms"])
    assert all(_positive(side["data_ms"]) and _positive(side["step_ms"]) for side in (plain, remix))
    assert plain["batch_sizes"] >= 1 and remix["batch_sizes"] >= 1
    assert plain["set_epoch_ms_per_epoch"] == 0 and _positive(remix["set_epoch_ms_per_epoch"])
    for side in (plain, remix):
        assert side["device_wait_ms_per_epoch"] >= 0
    assert plain["steps_per_epoch"] == math.ceil(row["work"] / row["batch_size"])
    assert remix["steps_per_epoch"] >= 1
    steps = f"{plain['steps_per_epoch']:g} / {remix['steps_per_epoch']:g}"
    assert gpu._table_row(row)["steps"] == steps


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
    _check_host_ms(row)


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


def test_quick_run_of_the_quick_start_compile_and_micro_levels(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = gpu.main(["--quick", "--levels", "quickstart,compile,micro", "--out", str(out)])
    rows = {row["level"]: row for row in result["levels"]}
    for level in ("quickstart", "compile"):
        row = rows[level]
        assert row["ratio"] == pytest.approx(row["remix"] / row["plain"]) and row["compiled"] == (
            level == "compile"
        )
        _check_host_ms(row)
        assert row["syncs"]["remix"] == {"syncs_per_step": None, "syncs": None, "steps": None}
    cases = [row for row in result["levels"] if row["kind"] == "micro"]
    assert [row["level"] for row in cases] == [
        "update: 1 head", "update: 2 heads, ALL", "update: 2 heads, smoothing + balance",
        "update: 2 heads, score=loss", "remix_loss vs joint loss",
        "remix_loss, one id, vs joint loss",
    ]  # fmt: skip
    for row in cases:
        assert _positive(row["us_per_call"]) and row["launches_per_call"] is None  # no CUDA
    loss = cases[-1]
    assert loss["ratio"] == pytest.approx(loss["us_per_call"] / loss["joint_us_per_call"])


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torchdata", "lightning", "accelerate", "webdataset",
                                  "datasets", "transformers", "matplotlib", "pytorch_lightning"}:
            raise ImportError(f"{name} is not installed on the GPU machine")
sys.meta_path.insert(0, Block())
"""


def test_gpu_sh_quick_runs_without_the_projects_other_dependencies(tmp_path: Path) -> None:
    """``bash benchmarks/gpu.sh --quick``, as on a CUDA machine that has torch, numpy, tqdm and
    Triton but none of torchdata, lightning, ...: a site hook refuses to import those."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": f"{tmp_path}:{root}"}
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu.sh"), "--quick", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert [row["level"] for row in saved["levels"] if row["kind"] != "micro"] == [
        "tiny", "tiny-skip", "cnn", "cnn-skip", "quickstart", "compile",
    ]  # fmt: skip
    assert not [row for row in saved["levels"] if row["kind"] == "failed"]
    assert "host ms/step plain" in done.stdout and "remix_loss vs joint loss" in done.stdout


def test_the_meta_proxy_reports_every_case_with_host_time_and_aten_calls() -> None:
    from benchmarks.step_costs import proxy

    rows = proxy(calls=3)
    assert [row["case"] for row in rows] == [
        "update: 1 head", "update: 2 heads, ALL", "update: 2 heads, smoothing + balance",
        "update: 2 heads, score=loss", "remix_loss vs joint loss",
        "remix_loss, one id, vs joint loss",
    ]  # fmt: skip
    for row in rows:
        assert row["ops_per_call"] >= 1 and math.isfinite(row["host_us"])
    for row in rows[-2:]:
        assert row["ratio"] == pytest.approx(row["host_us"] / row["joint_host_us"])
        assert row["joint_ops_per_call"] == 6  # three cross-entropies and three additions


def test_a_remix_step_dispatches_no_more_operations_than_the_joint_step() -> None:
    """The tiny level's step on ``meta`` tensors (what a GPU would run): a unimodal batch with
    the loader's host ids masks and weighs on the host, so its step, forward and backward,
    dispatches at most the joint step's operations (612 against 586 before, 514 against 538
    after the change)."""
    from benchmarks.step_costs import step_ops

    joint, remix = step_ops()
    assert (joint["case"], remix["case"]) == ("tiny step, joint", "tiny step, remix")
    assert 0 < remix["ops"] <= joint["ops"], (joint, remix)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
@pytest.mark.parametrize("python", ["this", "missing"])
def test_the_device_run_refuses_a_python_without_cuda_and_says_why(
    python: str, tmp_path: Path
) -> None:
    """``scripts/gpu_check.sh`` stops at once, exit 2, before it writes or times anything."""
    root = Path(__file__).resolve().parents[1]
    exe = sys.executable if python == "this" else str(tmp_path / "no-such-python")
    env = {**os.environ, "PYTHON": exe, "OUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", str(root / "scripts" / "gpu_check.sh")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    why = "is_available() is False" if python == "this" else "cannot import torch"
    assert why in done.stderr and exe in done.stderr
    assert not (tmp_path / "out").exists()
