"""Plumbing of ``benchmarks/distributed.py`` in ``--quick`` mode (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import distributed as bench


def test_quick_run_writes_json_and_prints_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "distributed.json"
    payload = bench.main(["--quick", "--out", str(out), "--sizes", "3000,7001"])
    saved = json.loads(out.read_text())
    assert saved["sync"] == payload["sync"]
    assert saved["world_size"] == 2 and saved["backend"] == "gloo"
    assert [row["n"] for row in saved["sync"]] == [3000, 7001]
    for row in saved["sync"]:
        assert row["bytes"] == 4 * (2 * 2 * row["n"] + 3)
        for key in ("sync_s", "snapshot_s", "all_reduce_s"):
            assert row[key] > 0
        assert len(row["sync_seconds"]) == saved["config"]["reps"]
    modes = {row["mode"]: row for row in saved["step"]}
    assert set(modes) == {"single", "distributed"}
    assert modes["single"]["num_replicas"] == 1
    assert modes["distributed"]["num_replicas"] == 2  # read from torch.distributed
    for row in modes.values():
        assert row["step_us"] == pytest.approx(row["next_us"] + row["update_us"])
        assert row["next_us"] > 0 and row["update_us"] > 0
    assert [r["rank"] for r in saved["ranks"]] == [0, 1]
    printed = capsys.readouterr().out
    assert "Score sync per remix epoch" in printed and "Per step" in printed
    assert str(out) in printed
