"""Plumbing of the throughput and scaling benchmarks: --quick runs, JSON schema (no timings)."""

from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import _common, scaling, step_split, throughput


def positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    )


def check_machine(machine: dict[str, Any]) -> None:
    for key in ("torch", "torch_threads", "cpu_count", "python", "platform"):
        assert machine[key], key
    assert positive(machine["torch_threads"]) and positive(machine["cpu_count"])


def quick(module: Any, tmp_path: Path) -> dict[str, Any]:
    """``module.main(["--quick"])``: the JSON it writes is what it returns, machine included."""
    name = module.__name__.rpartition(".")[2]
    out = tmp_path / f"{name}.json"
    result: dict[str, Any] = module.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["benchmark"] == name
    check_machine(result["machine"])
    return result


def test_throughput_quick_writes_every_level(tmp_path: Path) -> None:
    result = quick(throughput, tmp_path)
    rows = result["levels"]
    names = [row["level"] for row in rows]
    assert names[0] == "sampler alone" and names[-1] == "train step"
    assert len(rows) == 10  # sampler, zeros, drop, default x2, decode x2, partial x2, train
    reps = result["config"]["reps"]
    for row in rows:
        for key in ("work", "plain", "remix", "ratio", "pair_ratio", "cpu_ratio"):
            assert positive(row[key]), (row["level"], key, row[key])
        assert row["unit"] in ("keys/s", "samples/s")
        for key in ("plain_seconds", "remix_seconds", "plain_cpu_seconds", "remix_cpu_seconds"):
            assert len(row[key]) == reps
        assert all(positive(t) for t in row["plain_seconds"] + row["remix_seconds"])
        assert row["ratio"] == pytest.approx(row["remix"] / row["plain"])
        pairs = [p / r for p, r in zip(row["plain_seconds"], row["remix_seconds"])]
        assert row["pair_ratio"] == pytest.approx(statistics.median(pairs))
        assert (row["pair_q1"], row["pair_q3"]) == _common.quartiles(pairs)
        # rates are work / median seconds
        assert row["plain"] == pytest.approx(row["work"] / statistics.median(row["plain_seconds"]))
        assert row["remix"] == pytest.approx(row["work"] / statistics.median(row["remix_seconds"]))
        if row["goal"] is None:
            assert row["met"] is None
        else:
            assert row["met"] == (row["ratio"] >= row["goal"])
    goals = {row["level"]: row["goal"] for row in rows}
    assert goals["sampler alone"] == 1.0 and goals["in-memory, mask=zeros"] == 0.90
    assert goals["in-memory, mask=drop"] == 0.98 and goals["train step"] == 0.99
    collates = {row["level"]: row.get("collate") for row in rows}
    assert collates["in-memory, mask=zeros"] == "remix"
    assert collates["in-memory, mask=zeros, default_collate"] == "default"
    assert goals["in-memory, mask=drop, default_collate"] is None
    assert rows[-1]["device"] == "cpu"
    machine = result["machine"]  # trained numbers reproduce only on the same CPU kernels
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu"] is None or (isinstance(machine["cpu"], str) and machine["cpu"])


@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=40))
def test_quartiles_hold_the_middle_half(values: list[float]) -> None:
    q1, q3 = _common.quartiles(values)
    ordered = sorted(values)
    assert ordered[0] <= q1 <= statistics.median(values) <= q3 <= ordered[-1]
    # at least a quarter of the values lies at or below q1, and at or above q3
    assert 4 * sum(v <= q1 for v in values) >= len(values)
    assert 4 * sum(v >= q3 for v in values) >= len(values)
    assert _common.quartiles(values[:1] * len(values)) == (values[0], values[0])


def test_cpu_model_reads_the_kernels_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU 9000 \nflags\t: avx2\n")
    assert _common.cpu_model(info) == "Test CPU 9000"
    info.write_text("processor\t: 0\n")  # no model line: the platform's answer, or None
    assert _common.cpu_model(info) == (platform.processor() or None)
    assert _common.cpu_model(tmp_path / "absent") == (platform.processor() or None)


def test_throughput_levels_can_be_chosen(tmp_path: Path) -> None:
    result = throughput.main(["--quick", "--levels", "sampler", "--out", str(tmp_path / "t.json")])
    assert [row["level"] for row in result["levels"]] == ["sampler alone"]
    with pytest.raises(SystemExit):
        throughput.main(["--quick", "--levels", "nope", "--out", str(tmp_path / "t.json")])


def test_scaling_quick_writes_every_table(tmp_path: Path) -> None:
    result = quick(scaling, tmp_path)
    assert [row["batch"] for row in result["update"]] == result["config"]["batch_sizes"]
    for row in result["update"]:
        kinds = ("table_us", "logits_us", "online_us", "online_all_us")
        assert all(positive(row[k]) for k in kinds)
    planning = result["planning"]
    sizes = result["config"]["sizes"]
    assert [(row["options"], row["n"]) for row in planning] == [
        (options, n) for options in scaling.PLANNING_OPTIONS for n in sizes
    ]
    assert [row["growth"] is None for row in planning] == [n == sizes[0] for n in sizes] * 2
    for row in planning:
        for key in ("assignment_s", "plan_s", "total_s", "ns_per_sample"):
            assert positive(row[key]), key
        assert row["total_s"] == pytest.approx(row["ns_per_sample"] * row["n"] * 1e-9)
        # 2 modalities: float32 scores + fresh flags + scored flag + int8 snapshot
        assert row["filter_bytes_per_sample"] >= 12
        assert 4 <= row["sampler_bytes_per_sample"] < 16
    for row in planning:
        if row["n"] != sizes[0]:
            assert isinstance(row["growth"], float) and math.isfinite(row["growth"])
    for row in result["reference"]:
        assert positive(row["reference_us_per_sample"]) and positive(row["ours_us_per_sample"])
        assert row["speedup"] == pytest.approx(
            row["reference_us_per_sample"] / row["ours_us_per_sample"]
        )
        assert row["agree"] >= 0.99  # same decisions (log base and clipping aside)
    goal = result["goal"]
    assert goal["limit_s"] == 1.0 and goal["met"] is False  # --quick stops below 10^7
    largest = [row for row in planning if row["n"] == sizes[-1]]
    assert goal["plan_s"] == max(row["total_s"] for row in largest)  # the slower option set
    assert goal["plan_options"] in scaling.PLANNING_OPTIONS


def test_step_split_parts_add_up_to_the_step_and_only_remix_updates() -> None:
    rows = step_split.split(n=256, batch_size=32, width=8, epochs=3, skip=1)
    parts = {row["part"]: row for row in rows}
    assert list(parts) == [*step_split.PARTS, "total"]
    for side in ("plain", "remix"):
        total = sum(parts[p][side] for p in step_split.PARTS)
        assert parts["total"][side] == pytest.approx(total)
        assert all(row[side] >= 0 for row in rows)
    for row in rows:
        assert row["extra"] == pytest.approx(row["remix"] - row["plain"])
    # the plain side never sets an epoch; its "update" is only the timer's own cost
    assert parts["set_epoch"]["plain"] == 0.0
    assert parts["data"]["plain"] > 0 and parts["update"]["remix"] > 0


def test_step_split_refuses_to_count_no_epoch() -> None:
    with pytest.raises(SystemExit, match="--skip should be below --epochs"):
        step_split.main(["--epochs", "2", "--skip", "2"])
