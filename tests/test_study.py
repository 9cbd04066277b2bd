"""Plumbing of the validation study (``benchmarks/study.py``): not its numbers.

Synthetic HAPT and mfeat data, so nothing skips; the selection is checked to
read validation numbers only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from benchmarks import hapt, study
from benchmarks.harness import Job
from benchmarks.methods import VARIANTS, method_config
from benchmarks.mfeat import prepare_mfeat
from remix_data.datasets import HaptData, MfeatData

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_hapt(per_user: int = 4, window: int = 32, seed: int = 0) -> HaptData:
    """Windows of subjects 1..30: acc carries the label, gyro a bit of it."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, 31), per_user).astype(np.int64)
    label = rng.integers(0, 6, users.size)
    acc = rng.normal(size=(users.size, 3, window)).astype(np.float32)
    gyro = rng.normal(size=(users.size, 3, window)).astype(np.float32)
    acc[:, 0] += label[:, None]
    gyro[:, 1] += 0.3 * label[:, None]
    return HaptData(
        acc=acc, gyro=gyro, label=label.astype(np.int64), user=users,
        experiment=users, start=np.zeros(users.size, np.int64),
    )  # fmt: skip


def synthetic_mfeat(per_class: int = 40, seed: int = 0) -> MfeatData:
    """10 classes; ``fac`` carries the label strongly, ``mor`` weakly."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(10), per_class).astype(np.int64)
    fac = rng.normal(size=(label.size, 12)).astype(np.float32)
    mor = rng.normal(size=(label.size, 3)).astype(np.float32)
    fac[np.arange(label.size), label] += 3.0
    mor[:, 0] += 0.3 * label
    return MfeatData(views=MappingProxyType({"fac": fac, "mor": mor}), label=label)


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
        assert {"data", "stages", "base_selection", "selection", "validation_table", "summary",
                "goal", "runs", "test_names", "joint_rerun_identical"} <= set(sec)  # fmt: skip
        base = sec["base_selection"]["chosen"]
        assert base in study.BASES
        assert sec["stages"]["2"] == study.stage2_methods(base)
        chosen = sec["selection"]["chosen"]
        assert sec["test_names"] == ["joint", "remix", chosen]
        assert len(sec["runs"]) == len(saved["config"]["seeds"]) * (4 + 1 + len(VARIANTS))
        for run in sec["runs"]:
            assert set(run["val"]) == set(run["test"]) == {"fused", "strong", "weak"}
            assert run["time_vs_joint"] > 0
        for row in sec["validation_table"].values():
            assert not any("test" in key for key in row)
        for key in ("fused", "weak"):
            assert {"gain", "spread", "paired", "beats"} <= set(sec["goal"][key])
        assert isinstance(sec["goal"]["met"], bool)
        assert sec["joint_rerun_identical"] is True  # training is deterministic per seed
    assert saved["tasks"]["hapt"]["data"]["val_users"] == list(study.VAL_USERS)
    assert saved["tasks"]["mfeat"]["weak"] == "mor"


def _fake_runs(rng: np.random.Generator) -> list[dict[str, Any]]:
    runs = []
    for stage, names in ((1, study.STAGE1), (2, study.stage2_methods("remix-skip"))):
        for seed in range(3):
            for name in names:
                acc = {k: float(rng.uniform(0.5, 1.0)) for k in study.KEYS}
                runs.append({"name": name, "seed": seed, "stage": stage, "val": acc,
                             "test": {k: float(rng.uniform()) for k in study.KEYS},
                             "time_vs_joint": 1.0 if name == "joint" else
                             float(rng.uniform(0.7, 1.2))})  # fmt: skip
    return runs


def test_selection_never_reads_test_numbers() -> None:
    runs = _fake_runs(np.random.default_rng(1))
    candidates = ["remix", *study.BASES, *study.stage2_methods("remix-skip")[1:]]
    table = study.validation_table(runs)
    before = study.choose(table, candidates)
    for r in runs:  # poison every test number
        r["test"] = {k: math.nan for k in r["test"]}
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
    assert len(seen) == 2  # the base, then the final choice
    assert seen[0] == study.validation_table([r for r in runs if r["stage"] == 1])
    assert seen[1] == study.validation_table(runs)


def test_choose_applies_budget_then_score_then_time() -> None:
    def row(fused: float, weak: float, t: float) -> dict[str, float]:
        return {"fused": fused, "weak": weak, "strong": 0.9, "time_vs_joint": t}

    table = {
        "joint": row(0.90, 0.70, 1.0),
        "slow": row(0.99, 0.90, 1.30),  # best, but over the budget
        "a": row(0.92, 0.73, 1.00),  # min gain 0.02
        "b": row(0.95, 0.72, 0.90),  # min gain 0.02, faster: wins the tie
        "c": row(0.99, 0.69, 0.80),  # min gain -0.01
    }
    sel = study.choose(table, ["slow", "a", "b", "c"])
    assert sel["chosen"] == "b" and not sel["over_budget"] and sel["beats_joint_on_val"]
    assert [e["name"] for e in sel["ranking"]] == ["b", "a", "c", "slow"]
    only_slow = study.choose(table, ["slow"])
    assert only_slow["chosen"] == "slow" and only_slow["over_budget"]


def test_goal_check_needs_both_gains_beyond_the_spread_and_the_budget() -> None:
    def run(name: str, seed: int, fused: float, weak: float, t: float = 1.0) -> dict[str, Any]:
        acc = {"fused": fused, "strong": 0.9, "weak": weak}
        return {"name": name, "seed": seed, "stage": 1, "val": acc, "test": acc,
                "time_vs_joint": t}  # fmt: skip

    joint = [run("joint", s, 0.90 + 0.01 * s, 0.70 + 0.01 * s) for s in range(3)]
    good = [run("x", s, 0.95 + 0.01 * s, 0.76 + 0.01 * s) for s in range(3)]
    assert study.goal_check(joint + good, "x")["met"]
    slow = [run("x", s, 0.95 + 0.01 * s, 0.76 + 0.01 * s, 1.2) for s in range(3)]
    assert not study.goal_check(joint + slow, "x")["met"]
    close = [run("x", s, 0.905 + 0.01 * s, 0.76 + 0.01 * s) for s in range(3)]
    check = study.goal_check(joint + close, "x")
    assert not check["met"] and not check["fused"]["beats"] and check["weak"]["beats"]


def test_variant_presets_reach_the_filter_and_the_sampler() -> None:
    names = hapt.HAPT.modalities
    cfg = method_config("remix-skip+all", names)
    assert cfg["skip_encoder"] and cfg["scoring"] == "online" and cfg["order"] == "interleave"
    assert cfg["filter"] == {"balance": "class", "smoothing": 0.5}
    assert cfg["sampler"] == {"joint_fraction": 0.25}
    assert method_config("remix-online-evalbn+joint25", names)["masked_encoder_eval"]
    assert method_config("joint", names)["sampler"] == {}
    with pytest.raises(TypeError, match="sampler"):
        method_config({"remix": True, "sampler": 0.25}, names)
    job = Job("remix-skip+all", 0, hapt.prepare_data(synthetic_hapt()), epochs=2, warmup=1)
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
