"""Tests of :func:`remix_data.plotting.plot_history` (needs the ``plot`` extra)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from remix_data import ALL, HardSampleFilter

pytest.importorskip("matplotlib")

from remix_data.plotting import plot_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(epochs: int = 3, n: int = 12) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    filt = HardSampleFilter(n, ("audio", "video"), labels=labels)
    for epoch in range(epochs):
        logits = {m: torch.randn(n, 3, generator=gen) for m in ("audio", "video")}
        filt.update(torch.arange(n), logits, modality=ALL)  # a scoring pass: unmasked rows
        filt.snapshot(epoch)
    return filt.history


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


def test_one_history_writes_a_valid_png(tmp_path: Path) -> None:
    out = plot_history(_history(), tmp_path / "sub" / "one.png", title="t", dpi=50)
    assert out == tmp_path / "sub" / "one.png"
    width, height = _png_size(out)
    assert width > 100 and height > 100


def test_several_runs_with_accuracies_and_an_empty_history(tmp_path: Path) -> None:
    histories = {"joint": [], "remix": _history(4)}
    accuracy = {
        "joint": {"fused": [0.5, 0.6, 0.7, 0.8], "audio head": [0.4, 0.5, 0.5, 0.6]},
        "remix": {"fused": [0.5, 0.55, 0.6, 0.7], "video head": [0.3, 0.3, 0.4, 0.4]},
    }
    out = plot_history(
        histories,
        str(tmp_path / "many.png"),
        accuracy=accuracy,
        modalities=("video", "audio"),
        dpi=50,
    )
    w_many, h_many = _png_size(out)
    w_one, h_one = _png_size(plot_history(_history(), tmp_path / "one.png", dpi=50))
    assert w_many > w_one and h_many > h_one  # two columns, three rows


def test_history_from_json_records(tmp_path: Path) -> None:
    records = [
        {
            "epoch": 2,
            "counts": {"a": 3, "b": 1},
            "filtered": 0,
            "mean_score": {"a": 0.1, "b": None},
        },
        {"epoch": 3, "counts": {"a": 2, "b": 2}, "filtered": 0, "mean_score": {}},
    ]
    _png_size(plot_history(records, tmp_path / "json.png", dpi=50))


@pytest.mark.parametrize(
    ("history", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, "neither history records nor accuracies"),
        ({}, {}, ValueError, "at least one run"),
        ("not a history", {}, TypeError, "list of filter.history records"),
        ([1, 2], {}, TypeError, r"\[0\] should be a dict"),
        ([{"epoch": 0}], {}, ValueError, "'counts'"),
        (None, {"modalities": ("audio", "depth")}, ValueError, "does not match"),
        (None, {"accuracy": {"fused": "high"}}, TypeError, "sequence of numbers"),
        (None, {"accuracy": {"fused": [0.1, "x"]}}, TypeError, "should hold numbers"),
        (None, {"accuracy": [0.1]}, TypeError, "should be a mapping"),
        (None, {"dpi": 0}, ValueError, "dpi should be a positive integer value, but got dpi=0"),
        (None, {"dpi": -3}, ValueError, "but got dpi=-3"),
        (None, {"dpi": 72.0}, TypeError, r"dpi should be a positive integer value, .*dpi=72\.0"),
        (None, {"dpi": True}, TypeError, "but got dpi=True"),
        (None, {"dpi": "100"}, TypeError, "but got dpi='100'"),
        ([{"counts": {"audio": -1}}], {}, ValueError, r"\['counts'\]\['audio'\]=-1"),
        ([{"counts": {"audio": 2.5}}], {}, TypeError, r"\['counts'\]\['audio'\]=2\.5"),
        ([{"counts": {"audio": 1}, "filtered": "2"}], {}, TypeError, r"\['filtered'\]='2'"),
        ([{"counts": {"audio": 1}, "filtered": -2}], {}, ValueError, r"\['filtered'\]=-2"),
    ],
)
def test_bad_input_raises(
    tmp_path: Path, history: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    path = tmp_path / "bad.png"
    with pytest.raises(error, match=match):
        plot_history(_history() if history is None else history, path, **kwargs)
    assert not path.exists()


def test_integers_go_through_the_shared_checks(tmp_path: Path) -> None:
    """``dpi`` and a record's counts: TypeError for a non-int, ValueError for a bad int."""
    good = [{"counts": {"audio": 1, "video": 0}, "filtered": None}]  # None: not recorded
    assert plot_history(good, tmp_path / "ok.png", dpi=20).exists()


def test_accuracy_for_an_unknown_run_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history lacks"):
        plot_history({"a": _history()}, tmp_path / "x.png", accuracy={"b": {"fused": [1.0]}})


def test_missing_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"'plot' extra"):
        plot_history(_history(), tmp_path / "x.png")
