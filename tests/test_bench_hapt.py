"""Plumbing of the HAPT benchmark (``benchmarks/hapt.py`` on the shared harness): not its numbers.

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
from _synthetic import synthetic_hapt
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import hapt as bench
from benchmarks import methods
from benchmarks.hapt_data import HAPT, prepare_data
from benchmarks.harness import Job, Splits, run, run_interleaved
from benchmarks.models import HaptNet
from remix_data import ALL, remix_loss
from remix_data.datasets import load_hapt
from remix_data.presets import PAPER, RECOMMENDED, Preset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data() -> Splits:
    return prepare_data(synthetic_hapt())


def _run(method: Any, data: Splits, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"epochs": 2, "warmup": 1, "batch_size": 16, "width": 4}
    options.update(kwargs)
    return run(method, 0, data, **options)


def test_prepare_data_splits_by_subject_and_normalises_on_train(data: Splits) -> None:
    assert data.info["n_train"] == 21 * 4 and data.info["n_test"] == 9 * 4
    assert data.val is None
    mean = data.train.inputs["acc"].mean(dim=(0, 2))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
    val = prepare_data(synthetic_hapt(), val_users=[20, 21])
    assert val.val is not None and len(val.val) == 8 and len(val.train) == 19 * 4
    assert val.info["val_users"] == [20, 21] and 20 not in val.info["train_users"]
    with pytest.raises(ValueError, match="training subjects"):
        prepare_data(synthetic_hapt(), val_users=[25])


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_every_method_runs_one_warmup_and_one_remix_epoch(method: str, data: Splits) -> None:
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
    data: Splits, monkeypatch: pytest.MonkeyPatch
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
    cfg = methods.method_config("remix", HAPT.modalities)
    x = {"acc": torch.randn(5, 3, 32), "gyro": torch.randn(5, 3, 32), "label": torch.arange(5)}
    y = x["label"]
    fa, fg = model.encoders["acc"](x["acc"]), model.encoders["gyro"](x["gyro"])

    loss, logits = methods.train_step(model, cfg, x, torch.full((5,), ALL))
    fused = model.fused(torch.cat([fg, fa], 1))
    expected = F.cross_entropy(fused, y) + 0.5 * (
        F.cross_entropy(model.heads["acc"](fa), y) + F.cross_entropy(model.heads["gyro"](fg), y)
    )
    assert torch.allclose(loss, expected, atol=1e-5)
    assert set(logits) == {"acc", "gyro"}

    acc_id = cfg["modalities"].index("acc")
    for skip in (False, True):
        cfg_m = methods.method_config("remix", HAPT.modalities, skip_encoder=skip)
        loss, logits = methods.train_step(model, cfg_m, x, torch.full((5,), acc_id))
        fused = model.fused(torch.cat([torch.zeros_like(fg), fa], 1))
        expected = F.cross_entropy(fused, y) + F.cross_entropy(model.heads["acc"](fa), y)
        assert torch.allclose(loss, expected, atol=1e-5)
        assert set(logits) == {"acc"}


def test_step_is_remix_loss_and_leaves_untrained_heads_without_gradient() -> None:
    torch.manual_seed(0)
    names = HAPT.modalities
    model = HaptNet(names, 6, width=4)
    x = {"acc": torch.randn(6, 3, 32), "gyro": torch.randn(6, 3, 32), "label": torch.arange(6)}
    mixed = torch.tensor([ALL, 0, 1, ALL, 1, 0])
    cfg = methods.method_config("remix-skip+joint25", names, joint_head_weight=0.25)
    loss, logits = methods.train_step(model, cfg, x, mixed)
    feats = {m: model.encoders[m](x[m]) for m in names}
    masked = {m: f * ((mixed == i) | (mixed == ALL)).float()[:, None] for i, (m, f) in
              enumerate(feats.items())}  # fmt: skip
    heads = {m: model.heads[m](masked[m]) for m in names}
    expected = remix_loss(model.fuse(masked), heads, x["label"], mixed, names, joint_weight=0.25)
    assert torch.allclose(loss, expected, atol=1e-6) and set(logits) == set(names)

    for skip in (False, True):
        model.zero_grad(set_to_none=True)
        cfg = methods.method_config("remix", names, skip_encoder=skip)
        loss, logits = methods.train_step(model, cfg, x, torch.full((6,), 1))
        loss.backward()
        assert set(logits) == {names[1]}
        assert all(p.grad is None for p in model.heads[names[0]].parameters())
        assert all(p.grad is not None for p in model.heads[names[1]].parameters())
        encoder_grads = [p.grad for p in model.encoders[names[0]].parameters()]
        if skip:  # the skipped encoder never ran
            assert all(g is None for g in encoder_grads)
        else:  # it ran, and its masked features carry zero gradient
            assert all(g is not None and not g.any() for g in encoder_grads)


def test_methods_are_built_from_the_presets() -> None:
    names = HAPT.modalities

    def resolved(method: Any) -> dict[str, Any]:
        return {k: v for k, v in methods.method_config(method, names).items() if k != "name"}

    assert resolved("remix") == resolved(methods.from_preset(PAPER))
    assert resolved("remix-skip+all") == resolved(methods.from_preset(RECOMMENDED))
    assert methods.METHODS["remix"]["skip_encoder"] is (PAPER.masking == "drop") is False
    assert methods.METHODS["remix-skip+all"]["skip_encoder"] is (RECOMMENDED.masking == "drop")
    assert resolved("remix-skip+all")["order"] == RECOMMENDED.sampler["order"]
    assert resolved("remix-skip+all")["filter"] == dict(RECOMMENDED.filter)
    with pytest.raises(ValueError, match="masking='zeros' in preset 'odd'"):
        methods.from_preset(Preset(name="odd", warmup=1, masking="zeros"))


def test_alone_and_probe_steps_train_what_they_claim() -> None:
    torch.manual_seed(0)
    names = HAPT.modalities  # weak first
    model = HaptNet(names, 6, width=4)
    x = {"acc": torch.randn(5, 3, 32), "gyro": torch.randn(5, 3, 32), "label": torch.arange(5)}
    joint = torch.full((5,), ALL)
    cfg = methods.method_config("alone-weak", names)
    assert cfg["alone"] == "gyro" and methods.method_config("alone-strong", names)["alone"] == "acc"
    loss, logits = methods.train_step(model, cfg, x, joint)
    expected = F.cross_entropy(model.heads["gyro"](model.encoders["gyro"](x["gyro"])), x["label"])
    assert torch.allclose(loss, expected) and set(logits) == {"gyro"}
    loss.backward()
    untouched = [*model.encoders["acc"].parameters(), *model.heads["acc"].parameters(),
                 *model.fused.parameters()]  # fmt: skip
    assert all(p.grad is None for p in untouched)

    # Probes: the encoders get exactly the fused loss's gradient; the heads still learn.
    cfg = methods.method_config("joint-fused", names)
    model.zero_grad(set_to_none=True)
    loss, logits = methods.train_step(model, cfg, x, joint)
    loss.backward()
    probed = [p.grad.clone() for p in model.encoders["acc"].parameters() if p.grad is not None]
    assert all(p.grad is not None and p.grad.any() for p in model.heads["acc"].parameters())
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model({m: x[m] for m in names})[0], x["label"]).backward()
    fused_only = [p.grad for p in model.encoders["acc"].parameters() if p.grad is not None]
    assert len(probed) == len(fused_only) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(probed, fused_only))
    with pytest.raises(ValueError, match="alone should be one of"):
        methods.method_config({"alone": "acc"}, names)
    with pytest.raises(ValueError, match="probe_heads is a joint-training baseline"):
        methods.method_config("remix", names, probe_heads=True)
    with pytest.raises(ValueError, match="lr_scale should be > 0"):
        methods.method_config("joint", names, lr_scale=0)


def test_lr_scale_reaches_the_optimiser(data: Splits) -> None:
    job = Job("remix-lr20", 0, data, epochs=2, warmup=1, lr=1e-3)
    assert job.opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert Job("joint", 0, data, epochs=2, lr=1e-3).opt.param_groups[0]["lr"] == 1e-3
    control = Job("joint-lr20", 0, data, epochs=2, lr=1e-3)  # the same rate, no remixing
    assert control.opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert not control.cfg["remix"]


def test_interleaved_jobs_give_the_results_of_separate_runs(data: Splits) -> None:
    options: dict[str, Any] = {"epochs": 2, "warmup": 1, "batch_size": 16, "width": 4}
    names = ["joint", "remix", "remix-online"]
    together = run_interleaved(names, 1, data, **options)
    for method, shared in zip(names, together):
        alone = run(method, 1, data, **options)
        assert shared["method"] == alone["method"]
        for a, b in zip(shared["epochs"], alone["epochs"]):
            assert a["test"] == b["test"] and a["train_loss"] == b["train_loss"]
            assert a.get("shares") == b.get("shares")
    job = Job("remix", 0, data, **options)
    with pytest.raises(RuntimeError, match="no epoch"):
        job.result()
    job.train_epoch()
    job.train_epoch()
    with pytest.raises(RuntimeError, match="all 2 epochs"):
        job.train_epoch()


def test_method_config_validation() -> None:
    names = HAPT.modalities
    cfg = methods.method_config("remix-online", names, order="interleave")
    assert cfg["order"] == "interleave" and cfg["scoring"] == "online"
    assert cfg["modalities"] == ("gyro", "acc")
    custom = methods.method_config(
        {"name": "ema", "remix": True, "filter": {"smoothing": 0.5}}, names
    )
    assert custom["filter"] == {"smoothing": 0.5} and custom["scoring"] == "pass"
    with pytest.raises(ValueError, match="unknown method"):
        methods.method_config("nope", names)
    with pytest.raises(ValueError, match="unknown keys"):
        methods.method_config("remix", names, warmup=3)
    with pytest.raises(ValueError, match="scoring"):
        methods.method_config("remix", names, scoring="sometimes")
    with pytest.raises(ValueError, match="modalities"):
        methods.method_config("remix", names, modalities=("acc", "audio"))


def test_filter_options_reach_the_filter(data: Splits) -> None:
    cfg = methods.method_config("remix", HAPT.modalities, filter={"keep_ratio": 0.5})
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
    has_alone = {"alone-strong", "alone-weak"} <= set(methods)
    for name, entry in report["summary"].items():
        assert entry["final_epoch"] == config["epochs"]
        assert entry["alone"] == {"alone-strong": "acc", "alone-weak": "gyro"}.get(name)
        if not has_alone:
            assert entry["gap"] is None
            continue
        assert set(entry["gap"]) == {"acc", "gyro"}
        for m, gap in entry["gap"].items():
            assert set(gap) == {"mean", "std", "n"} and gap["n"] == len(seeds)
            alone = report["summary"][f"alone-{'strong' if m == 'acc' else 'weak'}"][m]
            if len(seeds) == 1:  # one seed: the gap is alone minus head exactly
                assert gap["mean"] == pytest.approx(alone["mean"] - entry[m]["mean"])
    if has_alone:
        for m, name in (("acc", "alone-strong"), ("gyro", "alone-weak")):
            assert report["summary"][name]["gap"][m]["mean"] == 0.0
    epoch_keys = {"epoch", "phase", "lr", "train_loss", "test", "time_s", "cpu_s"}
    for one in report["runs"]:
        assert {"method", "seed", "final", "train_time_s", "epochs", "filter_history"} <= set(one)
        assert len(one["epochs"]) == config["epochs"]
        for record in one["epochs"]:
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
    _check_report(on_disk, list(methods.MAIN_METHODS), [0, 1])
    assert on_disk["config"]["schedule"] == "sequential"
    assert on_disk["data"]["n_val"] > 0 and "val" in on_disk["runs"][0]["epochs"][0]
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "| method | fused | acc head | gyro head | time (s) | time vs joint |" in printed
    assert "| remix-skip |" in printed
    assert (
        "| method | fused | acc head | gyro head | acc gap | gyro gap | time vs joint |" in printed
    )
    assert "| alone-weak | — | — |" in printed
    assert list(methods.MAIN_METHODS)[:4] == ["alone-strong", "alone-weak", "joint-fused", "joint"]
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


@given(
    st.integers(1, 4).flatmap(
        lambda count: st.tuples(st.just(count), st.lists(st.integers(-2, count - 1), max_size=8))
    )
)
def test_train_step_reads_which_encoders_a_batch_needs_like_the_torch_ops(case: Any) -> None:
    # PAD (-2) rows train nothing, ALL (-1) rows every modality; an empty batch counts as joint.
    count, ids = case
    modality = torch.tensor(ids, dtype=torch.int64)
    joint_rows = modality == ALL
    expected = (
        bool(joint_rows.all()),
        [bool((joint_rows | (modality == i)).any()) for i in range(count)],
    )
    assert methods._rows_trained(modality, count) == expected
