"""Plumbing of benchmarks/streaming.py: a --quick run writes every key (no timings checked)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks import streaming


def test_streaming_quick_writes_rates_and_buffer_peaks(tmp_path: Path) -> None:
    out = tmp_path / "streaming.json"
    result = streaming.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["benchmark"] == "streaming" and result["machine"]["torch"]
    assert [row["workers"] for row in result["levels"]] == [0, 2]
    for row, buffers in zip(result["levels"], result["buffers"]):
        for key in ("plain", "remix", "ratio", "pair_ratio"):
            assert row[key] > 0 and math.isfinite(row[key]), key
        assert row["plain_samples"] == result["config"]["n"]
        assert row["remix_samples"] == result["config"]["n"]  # the schedule covers n samples
        assert buffers["level"] == row["level"]
        assert set(buffers["peak_samples"]) == {"audio", "video"}
        for m, peak in buffers["peak_samples"].items():
            assert 0 < peak <= buffers["buffer_size"]
            assert buffers["peak_bytes"][m] == peak * buffers["sample_bytes"]
