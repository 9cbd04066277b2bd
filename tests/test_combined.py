"""Plumbing of the balancing comparison (``benchmarks/combined.py``): not its numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _synthetic import synthetic_hapt, synthetic_mfeat

from benchmarks import combined
from benchmarks.hapt_data import prepare_data
from benchmarks.harness import run_seeds
from benchmarks.methods import COMBINED_METHODS


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("combined") / "combined.json"
    return combined.main(
        ["--quick", "--seeds", "0", "1", "--out", str(out)],
        hapt_data=synthetic_hapt(),
        mfeat_data=synthetic_mfeat(),
    )


def test_quick_run_writes_every_method_gap_and_addition(report: dict[str, Any]) -> None:
    out = Path(report["command"].split("--out ")[1].split()[0])
    saved = json.loads(out.read_text())
    assert saved["schema"] == combined.SCHEMA and set(saved["tasks"]) == {"hapt", "mfeat"}
    for sec in saved["tasks"].values():
        weak = sec["weak"]
        assert list(sec["methods"]) == list(COMBINED_METHODS)
        assert len(sec["runs"]) == 2 * len(COMBINED_METHODS)
        summary = sec["summary"]
        assert set(summary) == set(COMBINED_METHODS)
        alone = {r["seed"]: r["final"][weak] for r in sec["runs"] if r["method"]["alone"] == weak}
        for name, s in summary.items():
            if s["alone"]:
                continue
            heads = [r["final"][weak] for r in sec["runs"] if r["method"]["name"] == name]
            gaps = [alone[seed] - h for seed, h in zip((0, 1), heads)]
            assert s["gap"][weak]["mean"] == pytest.approx(sum(gaps) / 2)
            assert s["time_vs_joint"]["mean"] > 0
        # Each remix setting added to joint and to each model-side method, then each
        # model-side method added to each remix setting.
        pairs = [(a["base"], a["added"], a["method"]) for a in sec["additions"]]
        remixes, kinds = ("remix-skip", "remix-skip+all"), ("ogm-ge", "pmr")
        assert pairs == [
            *(
                (b, r, r if b == "joint" else f"{r}+{b}")
                for b in ("joint", *kinds)
                for r in remixes
            ),
            *((r, k, f"{r}+{k}") for r in remixes for k in kinds),
        ]
        assert ("ogm-ge", "remix-skip", "remix-skip+ogm-ge") in pairs
        balanced = [r for r in sec["runs"] if r["method"]["balancer"] is not None]
        assert balanced and all("balancer" in e for r in balanced for e in r["epochs"])


def _runs(values: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """Fake runs: per method, per seed, (fused, weak head); alone-weak at 0.80."""
    runs = []
    for name, per_seed in values.items():
        for seed, (fused, weak) in enumerate(per_seed):
            alone = "weak" if name == "alone-weak" else None
            runs.append({"method": {"name": name, "alone": alone}, "seed": seed,
                         "final": {"fused": fused, "weak": weak}})  # fmt: skip
    return runs


def test_additions_pair_seeds_and_compare_with_the_larger_spread() -> None:
    runs = _runs(
        {
            "alone-weak": [(0.0, 0.80), (0.0, 0.80), (0.0, 0.80)],
            "pmr": [(0.90, 0.70), (0.92, 0.72), (0.94, 0.74)],  # fused std 0.02
            "remix-skip+pmr": [(0.89, 0.78), (0.91, 0.80), (0.93, 0.82)],  # -0.01 fused
        }
    )
    runs += _runs({"remix-skip": [(0.91, 0.80), (0.91, 0.80), (0.91, 0.80)]})
    rows = combined.additions(runs, "weak", ["alone-weak", "pmr", "remix-skip", "remix-skip+pmr"])
    assert [(r["base"], r["added"]) for r in rows] == [("pmr", "remix-skip"), ("remix-skip", "pmr")]
    fused, gap = rows[0]["fused"], rows[0]["weak_gap"]
    assert fused["paired"]["mean"] == pytest.approx(-0.01)
    assert fused["spread"] == pytest.approx(0.02)
    assert not fused["outside_spread"]  # a 1-point drop within a 2-point spread
    # Weak gap 0.10, 0.08, 0.06 -> 0.02, 0.00, -0.02: 8 points closed, spread 2.
    assert gap["paired"]["mean"] == pytest.approx(-0.08) and gap["outside_spread"]
    # PMR added to remix-skip: fused -2, 0, +2 points (paired std 2), the gap +2, 0, -2.
    back = rows[1]
    assert back["method"] == "remix-skip+pmr" and back["fused"]["paired"]["mean"] == pytest.approx(
        0
    )
    assert back["fused"]["paired"]["std"] == pytest.approx(0.02)
    assert not back["fused"]["outside_spread"] and not back["weak_gap"]["outside_spread"]
    table = combined.format_additions(rows, "weak")
    assert "-1.0 ± 0.0 (within the spread 2.0)" in table
    assert "-8.0 ± 0.0 (outside the spread 2.0)" in table


def test_run_seeds_gives_the_same_results_in_parallel_processes() -> None:
    data = prepare_data(synthetic_hapt())
    options: dict[str, Any] = {"epochs": 2, "warmup": 1, "batch_size": 16, "width": 4}
    names = ["joint", "remix-skip+all+ogm-ge"]
    serial = run_seeds(names, [0, 1], data, jobs=1, **options)
    forked = run_seeds(names, [0, 1], data, jobs=2, **options)
    for a, b in zip(serial, forked):
        assert [r["final"] for r in a] == [r["final"] for r in b]
        assert [r["seed"] for r in a] == [r["seed"] for r in b]
    assert serial[0][0]["final"] != serial[1][0]["final"]  # the seeds differ
