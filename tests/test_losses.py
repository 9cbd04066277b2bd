"""remix_loss: the paper's per-row loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from remix_data import ALL, HardSampleFilter, remix_loss


@given(st.lists(st.sampled_from([ALL, 0, 1]), min_size=1, max_size=12), st.floats(0.1, 2.0))
def test_remix_loss_equals_the_paper_formula_row_by_row(modalities: list, gamma: float) -> None:
    b = len(modalities)
    gen = torch.Generator().manual_seed(b)
    fused = torch.randn(b, 4, generator=gen)
    heads = {"a": torch.randn(b, 4, generator=gen), "v": torch.randn(b, 4, generator=gen)}
    target = torch.randint(0, 4, (b,), generator=gen)
    got = remix_loss(fused, heads, target, torch.tensor(modalities), ("a", "v"), gamma=gamma)
    rows = []
    for i, m in enumerate(modalities):
        ce = {k: F.cross_entropy(v[i : i + 1], target[i : i + 1]) for k, v in heads.items()}
        row = F.cross_entropy(fused[i : i + 1], target[i : i + 1])
        row = row + (0.5 * (ce["a"] + ce["v"]) if m == ALL else gamma * ce[("a", "v")[m]])
        rows.append(row)
    assert torch.allclose(got, torch.stack(rows).mean(), atol=1e-5)


def test_every_head_stays_in_the_graph() -> None:
    heads = {"a": torch.zeros(2, 3, requires_grad=True), "v": torch.zeros(2, 3, requires_grad=True)}
    remix_loss(
        torch.zeros(2, 3), heads, torch.tensor([0, 1]), torch.tensor([0, 0]), ("a", "v")
    ).backward()
    assert heads["v"].grad is not None and float(heads["v"].grad.abs().sum()) == 0.0
    assert float(heads["a"].grad.abs().sum()) > 0.0
    with pytest.raises(ValueError, match=r"missing \['v'\]"):
        remix_loss(
            torch.zeros(1, 3),
            {"a": torch.zeros(1, 3)},
            torch.tensor([0]),
            torch.tensor([0]),
            ("a", "v"),
        )


def test_one_modality_per_batch_and_the_filter_as_names() -> None:
    torch.manual_seed(0)
    fused, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    heads = {"a": torch.randn(4, 3), "b": torch.randn(4, 3)}
    filt = HardSampleFilter(10, ("a", "b"))
    rows = remix_loss(fused, heads, target, torch.full((4,), 1), ("a", "b"))
    for scalar in (1, torch.tensor(1)):
        assert torch.equal(remix_loss(fused, heads, target, scalar, filt), rows)
    with pytest.raises(
        ValueError,
        match=r"modality should be ALL \(-1\), PAD \(-2\) or lie in \[0, 2\), but got modality=5",
    ):
        remix_loss(fused, heads, target, 5, filt)
    with pytest.raises(ValueError, match=r"modality should hold ALL .* but got an id 5"):
        remix_loss(fused, heads, target, torch.tensor([0, 0, 5, 0]), filt)
    with pytest.raises(
        TypeError,
        match=r"modality should be an integer or an integer tensor, but got modality=0\.5",
    ):
        remix_loss(fused, heads, target, 0.5, filt)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="whose order"):
        remix_loss(fused, heads, target, 0, {"a": 0, "b": 1})
