"""The laziness-gap helpers: head accuracies, gaps and the share of a gap closed."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from remix_data.gap import FUSED, evaluate_heads, laziness_gap, share_closed

accuracy = st.floats(min_value=0.0, max_value=1.0)


def _onehot(classes: list[int], num_classes: int = 3) -> torch.Tensor:
    return F.one_hot(torch.tensor(classes), num_classes).float()


def test_evaluate_heads_counts_every_sample_once_over_uneven_batches() -> None:
    # 7 samples in batches of 3, 3, 1; head "a" right on 5, "b" on 2, fused on 7.
    y = [0, 1, 2, 0, 1, 2, 0]
    a = [0, 1, 2, 0, 1, 0, 1]
    b = [0, 0, 0, 1, 1, 1, 1]
    data = TensorDataset(torch.tensor(y), _onehot(y), _onehot(a), _onehot(b))
    loader = DataLoader(data, batch_size=3)
    acc = evaluate_heads(lambda t: (t[1], {"a": t[2], "b": t[3]}), loader, target=0)
    assert acc == {FUSED: 1.0, "a": 5 / 7, "b": 2 / 7}


def test_evaluate_heads_without_fused_head_and_with_a_target_function() -> None:
    batch = {"x": _onehot([2, 1]), "y": torch.tensor([2, 2])}
    alone = evaluate_heads(lambda s: {"x": s["x"]}, [batch], target=lambda s: s["y"])
    assert alone == {"x": 0.5}
    assert evaluate_heads(lambda s: (None, {"x": s["x"]}), [batch], target="y") == alone


def test_evaluate_heads_runs_without_grad() -> None:
    layer = nn.Linear(3, 3)
    batch = {"x": torch.randn(4, 3), "label": torch.zeros(4, dtype=torch.long)}
    seen: list[bool] = []

    def forward(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = layer(s["x"])
        seen.append(out.requires_grad)
        return {"x": out}

    evaluate_heads(forward, [batch])
    assert seen == [False]


@pytest.mark.parametrize(
    ("forward", "batches", "message"),
    [
        (lambda s: {"x": s["x"]}, [], "were empty"),
        (lambda s: {"x": s["x"][:1]}, None, r"should have shape \[2, C\], but got \(1, 3\)"),
        (lambda s: {"x": s["x"][0]}, None, r"should have shape \[2, C\], but got \(3,\)"),
        (lambda s: [s["x"]], None, "forward should return"),
    ],
)
def test_evaluate_heads_rejects_bad_outputs(forward: Any, batches: Any, message: str) -> None:
    batch = {"x": _onehot([0, 1]), "label": torch.tensor([0, 1])}
    error = TypeError if "forward should" in message else ValueError
    with pytest.raises(error, match=message):
        evaluate_heads(forward, [batch] if batches is None else batches)


def test_evaluate_heads_rejects_heads_that_change_and_bad_targets() -> None:
    batches = [{"x": _onehot([0]), "label": torch.tensor([0])} for _ in range(2)]
    calls = iter([{"x": batches[0]["x"]}, {"y": batches[0]["x"]}])
    with pytest.raises(ValueError, match=r"returned heads \['y'\] after \['x'\]"):
        evaluate_heads(lambda s: next(calls), batches)
    with pytest.raises(ValueError, match="target should select a \\[B\\] tensor"):
        evaluate_heads(lambda s: {"x": s["x"]}, batches, target="x")
    with pytest.raises(TypeError, match=r"target should select a \[B\] tensor .* got \[0\]"):
        evaluate_heads(lambda s: {"x": s["x"]}, batches, target=lambda b: [0])  # type: ignore[arg-type, return-value]


@given(st.dictionaries(st.sampled_from("abc"), st.tuples(accuracy, accuracy), min_size=1))
def test_gap_is_alone_minus_head(pairs: dict[str, tuple[float, float]]) -> None:
    alone = {m: a for m, (a, _) in pairs.items()}
    heads = {FUSED: 0.5, **{m: h for m, (_, h) in pairs.items()}}
    gap = laziness_gap(alone, heads)
    assert set(gap) == set(alone)  # "fused" is not a modality
    for m in alone:
        assert gap[m] + heads[m] == pytest.approx(alone[m])


@pytest.mark.parametrize(
    ("alone", "heads", "error", "message"),
    [
        ({"a": 0.9}, {"b": 0.8}, ValueError, r"missing \['a'\]"),
        ({"a": 95.0}, {"a": 0.9}, ValueError, r"alone\['a'\] should be an accuracy in \[0, 1\]"),
        ({"a": 0.9}, {"a": math.nan}, ValueError, r"heads\['a'\] should be an accuracy"),
        ({"a": True}, {"a": 0.9}, TypeError, r"alone\['a'\] should be a number"),
        ([0.9], {"a": 0.9}, TypeError, "alone should map modality names"),
    ],
)
def test_laziness_gap_rejects_bad_input(alone: Any, heads: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        laziness_gap(alone, heads)


@given(before=st.floats(0.0, 1.0), after=st.floats(-1.0, 1.0), min_gap=st.floats(0.0, 0.5))
def test_share_closed_is_none_at_or_below_min_gap(
    before: float, after: float, min_gap: float
) -> None:
    share = share_closed({"w": before}, {"w": after}, min_gap=min_gap)["w"]
    if before <= min_gap:  # on the boundary too: a gap of exactly min_gap is no gap
        assert share is None
    else:
        assert share is not None
        assert share == pytest.approx(1 - after / before)
        assert (share >= 1) == (after <= 0) or math.isclose(after, 0, abs_tol=1e-12)


def test_share_closed_boundaries_and_bad_input() -> None:
    assert share_closed({"w": 0.05}, {"w": 0.0})["w"] == 1.0
    assert share_closed({"w": 0.05}, {"w": 0.05})["w"] == 0.0
    assert share_closed({"w": 0.02}, {"w": 0.01}, min_gap=0.02)["w"] is None
    with pytest.raises(ValueError, match="min_gap should be a number >= 0"):
        share_closed({"w": 0.1}, {"w": 0.0}, min_gap=-0.1)
    with pytest.raises(ValueError, match="min_gap=nan"):
        share_closed({"w": 0.1}, {"w": 0.0}, min_gap=math.nan)
    with pytest.raises(TypeError, match=r"min_gap='0\.1'"):
        share_closed({"w": 0.1}, {"w": 0.0}, min_gap="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gap should hold finite gaps"):
        share_closed({"w": 0.1}, {"w": math.inf})
    with pytest.raises(ValueError, match=r"missing \['w'\]"):
        share_closed({"w": 0.1}, {"v": 0.0})


class _TwoEncoders(nn.Module):
    """An easy modality ``a`` and a weak one ``b`` (the label in 2 of 20 noisy inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.ModuleDict(
            {
                "a": nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
                "b": nn.Sequential(nn.Linear(20, 4), nn.ReLU()),
            }
        )
        self.heads = nn.ModuleDict({m: nn.Linear(4, 4) for m in "ab"})
        self.fused = nn.Linear(8, 4)

    def forward(self, x: dict[str, torch.Tensor], probe: bool) -> tuple[Any, dict[str, Any]]:
        feats = {m: self.enc[m](v) for m, v in x.items()}
        heads = {m: self.heads[m](f.detach() if probe else f) for m, f in feats.items()}
        fused = self.fused(torch.cat([feats["a"], feats["b"]], 1)) if len(feats) == 2 else None
        return fused, heads


def _synthetic(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    y = torch.randint(0, 4, (n,), generator=gen)
    a = 3 * F.one_hot(y, 4).float() + torch.randn(n, 4, generator=gen)
    b = torch.randn(n, 20, generator=gen)
    b[:, :2] += 1.5 * torch.stack([y % 2, y // 2], 1).float()
    return {"a": a, "b": b, "label": y}


def test_fused_only_training_leaves_a_measurable_gap_on_the_weak_modality() -> None:
    gen = torch.Generator().manual_seed(0)
    train, test = _synthetic(1000, gen), _synthetic(1000, gen)

    def fit(modalities: str, probe: bool) -> Any:
        torch.manual_seed(0)
        net = _TwoEncoders()
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(150):  # full-batch steps
            fused, heads = net({m: train[m] for m in modalities}, probe)
            loss = sum(F.cross_entropy(h, train["label"]) for h in heads.values())
            if fused is not None:
                loss = loss + F.cross_entropy(fused, train["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return lambda s: net({m: s[m] for m in modalities}, probe)

    alone = {m: evaluate_heads(fit(m, False), [test])[m] for m in "ab"}
    fused_only = laziness_gap(alone, evaluate_heads(fit("ab", True), [test]))
    with_heads = laziness_gap(alone, evaluate_heads(fit("ab", False), [test]))
    assert alone["a"] > 0.9 and alone["b"] > 0.5
    assert abs(fused_only["a"]) < 0.02  # the strong modality learns as much either way
    assert fused_only["b"] > 0.05  # the weak one less: the laziness gap
    # Auxiliary unimodal losses train the weak encoder: the gap is (nearly) gone.
    assert with_heads["b"] < fused_only["b"] - 0.05
    assert share_closed(fused_only, with_heads, min_gap=0.02)["b"] > 0.5  # type: ignore[operator]
