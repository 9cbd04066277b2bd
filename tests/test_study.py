"""Plumbing of the validation study (``benchmarks/study.py``): not its numbers.

Synthetic HAPT and mfeat data, so nothing skips; the selection is checked to
read validation numbers only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _synthetic import synthetic_hapt, synthetic_mfeat

from benchmarks import study
from benchmarks.hapt_data import HAPT, prepare_data
from benchmarks.harness import Job
from benchmarks.methods import method_config
from benchmarks.mfeat import prepare_mfeat

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("study") / "study.json"
    return study.main(
        ["--quick", "--out", str(out), "--small-plot", str(out.with_name("small.png"))],
        hapt_data=synthetic_hapt(),
        mfeat_data=synthetic_mfeat(),
    )


def test_quick_run_writes_the_schema(report: dict[str, Any]) -> None:
    out = Path(report["command"].split("--out ")[1].split()[0])
    saved = json.loads(out.read_text())
    assert saved["schema"] == study.SCHEMA and saved["criterion"] == study.CRITERION
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert out.with_name("small.png").read_bytes()[:8] == PNG_MAGIC
    assert set(saved["tasks"]) == {"hapt", "mfeat"}
    for sec in saved["tasks"].values():
        assert {"data", "methods", "selection", "validation_table", "summary",
                "goal", "runs", "test_names"} <= set(sec)  # fmt: skip
        chosen = sec["selection"]["chosen"]
        assert chosen in study.CANDIDATES and sec["methods"] == list(study.METHODS)
        assert sec["test_names"][:4] == ["alone-weak", "joint-fused", "joint", "remix"]
        assert sec["test_names"][-1] == chosen
        assert len(sec["runs"]) == len(saved["config"]["seeds"]) * len(study.METHODS)
        by_name = {(r["name"], r["seed"]): r for r in sec["runs"]}
        for run in sec["runs"]:
            assert set(run["val"]) == set(run["test"]) == {"fused", "strong", "weak"}
            assert run["time_vs_joint"] > 0
            for split in ("val", "test"):  # gap = alone run's accuracy - this head, same seed
                weak = by_name[("alone-weak", run["seed"])][split]["weak"]
                assert run["gap"][split]["weak"] == pytest.approx(weak - run[split]["weak"])
                assert set(run["gap"][split]) == {"strong", "weak"}
        for entry in sec["summary"].values():
            assert set(entry["gap"]["test"]) == {"strong", "weak"}
        assert sec["summary"]["alone-weak"]["gap"]["test"]["weak"]["mean"] == 0.0
        for row in sec["validation_table"].values():
            assert not any("test" in key for key in row)
        goal = sec["goal"]
        assert {"joint", "chosen", "spread", "share_closed", "paired", "closes"} <= set(
            goal["weak_gap"]
        )
        assert {"chosen", "joint", "within_spread"} <= set(goal["fused"])
        assert isinstance(goal["met"], bool)
        for row in sec["validation_table"].values():
            assert {"weak_gap", "weak_gap_std", "strong_gap"} <= set(row)
    assert saved["tasks"]["hapt"]["data"]["val_users"] == list(study.VAL_USERS)
    assert saved["tasks"]["mfeat"]["weak"] == "mor"


def _fake_runs(rng: np.random.Generator) -> list[dict[str, Any]]:
    runs = []
    for seed in range(3):
        for name in study.METHODS:
            acc = {k: float(rng.uniform(0.5, 1.0)) for k in study.KEYS}
            gap = {g: float(rng.uniform(-0.05, 0.1)) for g in study.GAPS}
            runs.append({"name": name, "seed": seed, "stage": 1, "val": acc,
                         "test": {k: float(rng.uniform()) for k in study.KEYS},
                         "gap": {"val": gap, "test": {g: float(rng.uniform()) for g in gap}},
                         "time_vs_joint": 1.0 if name == "joint" else
                         float(rng.uniform(0.7, 1.2))})  # fmt: skip
    return runs


def test_selection_never_reads_test_numbers() -> None:
    runs = _fake_runs(np.random.default_rng(1))
    candidates = list(study.CANDIDATES)
    table = study.validation_table(runs)
    before = study.choose(table, candidates)
    for r in runs:  # poison every test number
        r["test"] = {k: math.nan for k in r["test"]}
        r["gap"]["test"] = {k: math.nan for k in r["gap"]["test"]}
    table_after = study.validation_table(runs)
    assert table_after == table
    assert study.choose(table_after, candidates) == before


def test_main_feeds_choose_the_validation_table_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    real = study.choose

    def spy(table: Any, candidates: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(table)
        return real(table, candidates, **kwargs)

    monkeypatch.setattr(study, "choose", spy)
    rep = study.main(
        ["--quick", "--tasks", "mfeat", "--out", str(tmp_path / "s.json")],
        mfeat_data=synthetic_mfeat(),
    )
    runs = rep["tasks"]["mfeat"]["runs"]
    assert len(seen) == 1
    assert seen[0] == study.validation_table(runs)


def test_choose_applies_fused_spread_and_budget_then_gap_then_time() -> None:
    def row(fused: float, gap: float, t: float, std: float = 0.0) -> dict[str, float]:
        return {"fused": fused, "fused_std": std, "weak": 0.8 - gap, "weak_std": 0.01,
                "strong": 0.9, "weak_gap": gap, "time_vs_joint": t}  # fmt: skip

    table = {
        "alone-weak": row(0.3, 0.0, 0.7),
        "joint": row(0.90, 0.04, 1.0, std=0.01),
        "slow": row(0.99, 0.00, 1.01),  # closes the gap, but over the budget
        "weak-fused": row(0.8899, 0.00, 0.8),  # below joint mean - std
        "edge": row(0.89, 0.02, 1.0),  # fused exactly on the floor, time exactly 1.0x
        "a": row(0.95, 0.02, 0.9),  # same gap as "edge", faster: wins the tie
        "c": row(0.99, 0.03, 0.5),
    }
    sel = study.choose(table, ["slow", "weak-fused", "edge", "a", "c"])
    assert sel["chosen"] == "a" and not sel["none_eligible"] and sel["joint_has_gap"]
    assert [e["name"] for e in sel["ranking"]] == ["a", "edge", "c", "weak-fused", "slow"]
    rank = {e["name"]: e for e in sel["ranking"]}
    assert rank["a"]["gap_closed"] == pytest.approx(0.5)
    assert rank["edge"]["eligible"] and not rank["weak-fused"]["fused_within_spread"]
    only_slow = study.choose(table, ["slow"])
    assert only_slow["chosen"] == "slow" and only_slow["none_eligible"]
    no_gap = {**table, "joint": row(0.90, 0.0, 1.0)}
    assert study.choose(no_gap, ["a"])["ranking"][0]["gap_closed"] is None
    assert not study.choose(no_gap, ["a"])["joint_has_gap"]


def test_goal_check_needs_the_gap_shrunk_beyond_the_spread_fused_kept_and_the_budget() -> None:
    def run(name: str, seed: int, fused: float, gap: float, t: float = 1.0) -> dict[str, Any]:
        acc = {"fused": fused, "strong": 0.9, "weak": 0.8 - gap}
        gaps = {"strong": 0.0, "weak": gap}
        return {"name": name, "seed": seed, "stage": 1, "val": acc, "test": acc,
                "gap": {"val": gaps, "test": gaps}, "time_vs_joint": t}  # fmt: skip

    joint = [run("joint", s, 0.90 + 0.01 * s, 0.05 + 0.002 * s) for s in range(3)]
    good = [run("x", s, 0.90 + 0.01 * s, 0.01 + 0.002 * s) for s in range(3)]
    check = study.goal_check(joint + good, "x")
    assert check["met"] and check["weak_gap"]["share_closed"] == pytest.approx(0.04 / 0.052)
    slow = [run("x", s, 0.90 + 0.01 * s, 0.01 + 0.002 * s, 1.2) for s in range(3)]
    assert not study.goal_check(joint + slow, "x")["met"]
    fused_lost = [run("x", s, 0.88 + 0.01 * s, 0.01 + 0.002 * s) for s in range(3)]
    check = study.goal_check(joint + fused_lost, "x")
    assert not check["met"] and not check["fused"]["within_spread"] and check["weak_gap"]["closes"]
    small = [run("x", s, 0.91, 0.048 + 0.002 * s) for s in range(3)]
    assert not study.goal_check(joint + small, "x")["weak_gap"]["closes"]


def test_variant_presets_reach_the_filter_and_the_sampler() -> None:
    names = HAPT.modalities
    cfg = method_config("remix-skip+all", names)
    assert cfg["skip_encoder"] and cfg["scoring"] == "online" and cfg["order"] == "interleave"
    assert cfg["filter"] == {"balance": "class", "smoothing": 0.5}
    assert cfg["sampler"] == {"joint_fraction": 0.25, "tail": "fill"}  # RECOMMENDED's
    assert method_config("remix-online-evalbn+joint25", names)["masked_encoder_eval"]
    assert method_config("joint", names)["sampler"] == {}
    with pytest.raises(TypeError, match="sampler"):
        method_config({"remix": True, "sampler": 0.25}, names)
    job = Job("remix-skip+all", 0, prepare_data(synthetic_hapt()), epochs=2, warmup=1)
    assert job.sampler is not None and job.sampler.joint_fraction == 0.25
    assert job.sampler.order == "interleave"
    assert job.filter is not None and job.filter.balance == "class"
    assert job.filter.smoothing == 0.5
    mjob = Job("remix-skip+joint25", 0, prepare_mfeat(synthetic_mfeat()), epochs=2, warmup=1)
    assert mjob.sampler is not None and mjob.sampler.joint_fraction == 0.25


def test_mfeat_split_is_stratified_60_20_20() -> None:
    data = prepare_mfeat(synthetic_mfeat())
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (240, 80, 80)
    for part in (data.train, data.val, data.test):
        counts = np.bincount(part.label.numpy(), minlength=10)
        assert counts.min() == counts.max()
    assert abs(float(data.train.inputs["fac"].mean())) < 1e-5  # train statistics
