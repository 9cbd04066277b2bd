"""Plumbing of the HAPT benchmark (``benchmarks/hapt.py``): not its numbers.

Most tests run on a tiny synthetic ``HaptData`` (short windows, few per
subject) so they never skip; one smoke test runs ``--quick`` on the real file
when it is available.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import hapt as bench
from benchmarks._hapt_model import HaptNet
from remix_data import ALL
from remix_data.datasets import HaptData, load_hapt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_hapt(per_user: int = 4, window: int = 32, seed: int = 0) -> HaptData:
    """Windows of subjects 1..30 whose acc channels carry the label, gyro a bit of it."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, 31), per_user)
    n = users.size
    label = rng.integers(0, 6, n)
    acc = rng.normal(size=(n, 3, window)).astype(np.float32)
    gyro = rng.normal(size=(n, 3, window)).astype(np.float32)
    acc[:, 0] += label[:, None]
    gyro[:, 1] += 0.3 * label[:, None]
    return HaptData(
        acc=acc, gyro=gyro, label=label.astype(np.int64), user=users.astype(np.int64),
        experiment=users.astype(np.int64), start=np.zeros(n, np.int64),
    )  # fmt: skip


@pytest.fixture(scope="module")
def data() -> bench.HaptSplits:
    return bench.prepare_data(synthetic_hapt())


def _run(method: Any, data: bench.HaptSplits, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"epochs": 2, "warmup": 1, "batch_size": 16, "width": 4}
    options.update(kwargs)
    return bench.run(method, 0, data, **options)


def test_prepare_data_splits_by_subject_and_normalises_on_train(data: bench.HaptSplits) -> None:
    assert data.info["n_train"] == 21 * 4 and data.info["n_test"] == 9 * 4
    assert data.val is None
    mean = data.train.acc.mean(dim=(0, 2))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
    val = bench.prepare_data(synthetic_hapt(), val_users=[20, 21])
    assert val.val is not None and len(val.val) == 8 and len(val.train) == 19 * 4
    assert val.info["val_users"] == [20, 21] and 20 not in val.info["train_users"]
    with pytest.raises(ValueError, match="training subjects"):
        bench.prepare_data(synthetic_hapt(), val_users=[25])


@pytest.mark.parametrize("method", list(bench.METHODS))
def test_every_method_runs_one_warmup_and_one_remix_epoch(
    method: str, data: bench.HaptSplits
) -> None:
    result = _run(method, data)
    cfg = result["method"]
    assert cfg["name"] == method
    assert set(result["final"]) == {"fused", "acc", "gyro"}
    assert all(0.0 <= v <= 1.0 for v in result["final"].values())
    assert result["train_time_s"] > 0 and result["train_cpu_s"] >= 0
    first, last = result["epochs"]
    assert [first["epoch"], last["epoch"]] == [0, 1]
    assert np.isfinite(first["train_loss"]) and np.isfinite(last["train_loss"])
    if not cfg["remix"]:
        assert first["phase"] == last["phase"] == "joint"
        assert result["filter_history"] == [] and "shares" not in last
        return
    assert (first["phase"], last["phase"]) == ("warmup", "remix")
    assert "shares" not in first
    assert sum(last["shares"].values()) == pytest.approx(1.0)
    assert set(last["class_tv"]) == {"acc", "gyro"}
    assert all(v is None or 0.0 <= v <= 1.0 for v in last["class_tv"].values())
    assert [h["epoch"] for h in result["filter_history"]] == [1]
    if cfg["scoring"] == "pass":
        assert last["scoring_time_s"] > 0
    else:
        assert last["scoring_time_s"] == 0


def test_skip_encoder_never_runs_the_masked_encoder(
    data: bench.HaptSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, list[int]] = {"acc": [], "gyro": []}
    original = HaptNet.__init__

    def init(self: HaptNet, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for name, encoder in self.encoders.items():
            if encoder.training is not None:
                encoder.register_forward_hook(
                    lambda mod, inp, out, name=name: (
                        calls[name].append(inp[0].shape[0]) if mod.training else None
                    )
                )

    monkeypatch.setattr(HaptNet, "__init__", init)
    result = _run("remix-skip", data, epochs=1, warmup=0)
    shares = result["epochs"][0]["shares"]
    n = len(data.train)
    # Each encoder ran in training only on its own modality's samples.
    assert sum(calls["acc"]) == round(shares["acc"] * n)
    assert sum(calls["gyro"]) == round(shares["gyro"] * n)

    calls = {"acc": [], "gyro": []}
    _run("remix-online", data, epochs=1, warmup=0)
    assert sum(calls["acc"]) == sum(calls["gyro"]) == n  # masked encoders run anyway


def test_step_losses_follow_the_recipe() -> None:
    torch.manual_seed(0)
    model = HaptNet(("gyro", "acc"), 6, width=4)
    cfg = bench.method_config("remix")
    x = {"acc": torch.randn(5, 3, 32), "gyro": torch.randn(5, 3, 32), "label": torch.arange(5)}
    y = x["label"]
    fa, fg = model.encoders["acc"](x["acc"]), model.encoders["gyro"](x["gyro"])

    loss, logits = bench._step(model, cfg, x, torch.full((5,), ALL))
    fused = model.fused(torch.cat([fg, fa], 1))
    expected = F.cross_entropy(fused, y) + 0.5 * (
        F.cross_entropy(model.heads["acc"](fa), y) + F.cross_entropy(model.heads["gyro"](fg), y)
    )
    assert torch.allclose(loss, expected, atol=1e-5)
    assert set(logits) == {"acc", "gyro"}

    acc_id = cfg["modalities"].index("acc")
    for skip in (False, True):
        cfg_m = bench.method_config("remix", skip_encoder=skip)
        loss, logits = bench._step(model, cfg_m, x, torch.full((5,), acc_id))
        fused = model.fused(torch.cat([torch.zeros_like(fg), fa], 1))
        expected = F.cross_entropy(fused, y) + F.cross_entropy(model.heads["acc"](fa), y)
        assert torch.allclose(loss, expected, atol=1e-5)
        assert set(logits) == {"acc"}


def test_interleaved_jobs_give_the_results_of_separate_runs(data: bench.HaptSplits) -> None:
    options: dict[str, Any] = {"epochs": 2, "warmup": 1, "batch_size": 16, "width": 4}
    methods = ["joint", "remix", "remix-online"]
    together = bench.run_interleaved(methods, 1, data, **options)
    for method, shared in zip(methods, together):
        alone = bench.run(method, 1, data, **options)
        assert shared["method"] == alone["method"]
        for a, b in zip(shared["epochs"], alone["epochs"]):
            assert a["test"] == b["test"] and a["train_loss"] == b["train_loss"]
            assert a.get("shares") == b.get("shares")
    job = bench.Job("remix", 0, data, **options)
    with pytest.raises(RuntimeError, match="no epoch"):
        job.result()
    job.train_epoch()
    job.train_epoch()
    with pytest.raises(RuntimeError, match="all 2 epochs"):
        job.train_epoch()


def test_method_config_validation() -> None:
    cfg = bench.method_config("remix-online", order="interleave")
    assert cfg["order"] == "interleave" and cfg["scoring"] == "online"
    assert cfg["modalities"] == ("gyro", "acc")
    custom = bench.method_config({"name": "ema", "remix": True, "filter": {"smoothing": 0.5}})
    assert custom["filter"] == {"smoothing": 0.5} and custom["scoring"] == "pass"
    with pytest.raises(ValueError, match="unknown method"):
        bench.method_config("nope")
    with pytest.raises(ValueError, match="unknown keys"):
        bench.method_config("remix", warmup=3)
    with pytest.raises(ValueError, match="scoring"):
        bench.method_config("remix", scoring="sometimes")
    with pytest.raises(ValueError, match="modalities"):
        bench.method_config("remix", modalities=("acc", "audio"))


def test_filter_options_reach_the_filter(data: bench.HaptSplits) -> None:
    cfg = bench.method_config("remix", filter={"keep_ratio": 0.5})
    result = _run(cfg, data)
    assert result["epochs"][1]["filtered"] > 0


def _check_report(report: dict[str, Any], methods: list[str], seeds: list[int]) -> None:
    assert report["schema"] == bench.SCHEMA
    for key in ("command", "config", "data", "environment", "summary", "runs", "total_time_s"):
        assert key in report
    config = report["config"]
    for key in ("epochs", "warmup", "batch_size", "lr", "weight_decay", "decay_epoch", "seeds"):
        assert key in config
    assert list(config["methods"]) == methods and config["seeds"] == seeds
    assert len(report["runs"]) == len(methods) * len(seeds)
    assert list(report["summary"]) == methods
    for entry in report["summary"].values():
        for key in ("fused", "acc", "gyro", "train_time_s", "train_cpu_s"):
            assert set(entry[key]) == {"mean", "std", "n"}
            assert entry[key]["n"] == len(seeds)
        assert entry["time_vs_joint"] is None or entry["time_vs_joint"]["mean"] > 0
        curves = entry["per_epoch"]
        assert set(curves) == {"test", "shares", "class_tv"}
        assert all(len(v) == config["epochs"] for v in curves["test"].values())
        assert all(len(v) == config["epochs"] for v in curves["shares"].values())
    assert report["summary"]["joint"]["time_vs_joint"]["mean"] == pytest.approx(1.0)
    epoch_keys = {"epoch", "phase", "lr", "train_loss", "test", "time_s", "cpu_s"}
    for run in report["runs"]:
        assert {"method", "seed", "final", "train_time_s", "epochs", "filter_history"} <= set(run)
        assert len(run["epochs"]) == config["epochs"]
        for record in run["epochs"]:
            assert epoch_keys <= set(record)
            assert set(record["test"]) == {"fused", "acc", "gyro"}
            if record["phase"] == "remix":
                for key in ("shares", "mean_score", "class_tv", "batches", "switched"):
                    assert key in record


def test_main_writes_json_schema_plot_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res" / "hapt.json"
    argv = ["--quick", "--quiet", "--seeds", "0", "1", "--out", str(out), "--width", "4"]
    argv += ["--sequential", "--dpi", "40"]
    report = bench.main([*argv, "--val-users", "21"], hapt=synthetic_hapt())
    on_disk = json.loads(out.read_text())  # strict JSON: no NaN
    assert on_disk["summary"].keys() == report["summary"].keys()
    _check_report(on_disk, list(bench.MAIN_METHODS), [0, 1])
    assert on_disk["config"]["schedule"] == "sequential"
    assert on_disk["data"]["n_val"] > 0 and "val" in on_disk["runs"][0]["epochs"][0]
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "| method | fused | acc head | gyro head | time (s) | time vs joint |" in printed
    assert "| remix-skip |" in printed
    assert "validation accuracy (%), users [21]" in printed
    assert report["summary"]["remix"]["val"]["fused"]["n"] == 2


def test_quick_run_on_the_real_file(tmp_path: Path) -> None:
    try:
        hapt = load_hapt()
    except FileNotFoundError:
        pytest.skip("HAPT data package not installed")
    out = tmp_path / "hapt.json"
    report = bench.main(
        ["--quick", "--quiet", "--methods", "joint", "remix", "--out", str(out), "--dpi", "40"],
        hapt=hapt,
    )
    assert report["data"]["n_train"] == 480 and report["data"]["window"] == 128
    _check_report(json.loads(out.read_text()), ["joint", "remix"], [0])
