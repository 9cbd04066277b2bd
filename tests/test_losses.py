"""remix_loss: the paper's per-row loss."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from remix_data import ALL, HardSampleFilter, mask_features, remix_loss
from remix_data.vocabulary import PAD


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


def _paper_row(fused: torch.Tensor, heads: dict, target: torch.Tensor, i: int, m: int,
               names: tuple[str, ...], gamma: float) -> torch.Tensor:  # fmt: skip
    ce = {k: F.cross_entropy(v[i : i + 1], target[i : i + 1]) for k, v in heads.items()}
    row = F.cross_entropy(fused[i : i + 1], target[i : i + 1])
    if m == ALL:
        return row + 0.5 * sum(ce.values())
    return row + gamma * ce[names[m]]


@given(
    ids=st.lists(st.sampled_from([PAD, ALL, 0, 1, 2]), min_size=1, max_size=12),
    order=st.permutations(["a", "v", "t"]),
    gamma=st.floats(0.1, 2.0),
)
def test_pad_rows_weigh_nothing_and_every_real_row_one_over_b(
    ids: list[int], order: list[str], gamma: float
) -> None:
    """PAD rows weigh 0 in every term, the sum is still divided by B, and the heads may come
    in any key order: each row weighs the head of its own modality."""
    names = ("a", "v", "t")
    b = len(ids)
    gen = torch.Generator().manual_seed(b)
    fused = torch.randn(b, 4, generator=gen, requires_grad=True)
    made = {k: torch.randn(b, 4, generator=gen) for k in names}
    heads = {k: made[k] for k in order}  # another key order than the modalities
    target = torch.randint(0, 4, (b,), generator=gen)
    got = remix_loss(fused, heads, target, torch.tensor(ids), names, gamma=gamma)
    rows = [
        _paper_row(fused, made, target, i, m, names, gamma) for i, m in enumerate(ids) if m != PAD
    ]
    expected = torch.stack(rows).sum() / b if rows else torch.zeros(())
    assert torch.allclose(got, expected, atol=1e-5)
    got.backward()
    assert fused.grad is not None
    pad = torch.tensor([m == PAD for m in ids])
    assert float(fused.grad[pad].abs().sum()) == 0.0  # a repeat trains nothing


def test_names_in_another_order_than_a_live_filter_are_refused() -> None:
    filt = HardSampleFilter(4, ("left", "right"))
    fused = torch.randn(2, 3)
    heads = {"left": torch.randn(2, 3), "right": torch.randn(2, 3)}
    target, ids = torch.tensor([0, 1]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"another order .* pass the filter itself as modalities"):
        remix_loss(fused, heads, target, ids, ("right", "left"))
    with pytest.raises(ValueError, match="another order"):
        mask_features({"left": torch.ones(2, 1)}, ids, ("right", "left"))
    assert torch.equal(
        remix_loss(fused, heads, target, ids, ("left", "right")),
        remix_loss(fused, heads, target, ids, filt),
    )
    del filt  # no filter alive: a plain tuple cannot be checked, and is not refused
    gc.collect()
    remix_loss(fused, heads, target, ids, ("right", "left"))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("target [B, 1]", ValueError, r"target should have shape \[B\] = \(6,\) .* \(6, 1\)"),
        ("soft target", ValueError, r"got shape \(6, 3\) \(soft or one-hot targets"),
        ("short target", ValueError, r"target should have shape \[B\] = \(6,\) .* \(4,\)"),
        ("list target", TypeError, r"target should be a tensor of class indices, but got list"),
        ("fused [B]", ValueError, r"fused should be \[B, C\] logits with B, but got shape \(6,\)"),
        ("short head", ValueError, r"heads\['v'\] should be \[B, C\] logits with B=6 .* \(5, 3\)"),
        ("head array", TypeError, r"heads\['a'\] should be a tensor of logits, but got ndarray"),
    ],
)
def test_shapes_are_checked_naming_the_argument(change: str, error: type, message: str) -> None:
    fused, a, v = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    heads: dict[str, Any] = {"a": a, "v": v}
    target: Any = torch.tensor([0, 1, 2, 0, 1, 2])
    if change == "target [B, 1]":
        target = target[:, None]
    elif change == "soft target":
        target = F.one_hot(target, 3).float()
    elif change == "short target":
        target = target[:4]
    elif change == "list target":
        target = target.tolist()
    elif change == "fused [B]":
        fused = fused[:, 0]
    elif change == "short head":
        heads["v"] = v[:5]
    else:
        heads["a"] = a.numpy()
    with pytest.raises(error, match=message):
        remix_loss(fused, heads, target, 0, ("a", "v"))
    assert torch.isfinite(
        remix_loss(torch.randn(6, 3), {"a": a, "v": v}, torch.zeros(6).long(), 0, ("a", "v"))
    )


def test_probabilities_are_refused_and_binary_heads_take_the_sigmoid() -> None:
    target = torch.tensor([0, 1, 1, 0])
    probs = torch.softmax(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match=r"probabilities for v .* before softmax"):
        remix_loss(torch.randn(4, 3), {"a": torch.randn(4, 3), "v": probs}, target, 0, ("a", "v"))
    fused, ha, hv = (torch.randn(4, 1) for _ in range(3))
    got = remix_loss(fused, {"a": ha, "v": hv}, target, torch.tensor([0, 1, ALL, PAD]), ("a", "v"))
    bce = lambda x: F.binary_cross_entropy_with_logits(  # noqa: E731
        x.squeeze(1), target.float(), reduction="none"
    )
    rows = bce(fused)
    expected = (
        rows[0] + bce(ha)[0] + rows[1] + bce(hv)[1] + rows[2] + 0.5 * (bce(ha)[2] + bce(hv)[2])
    ) / 4
    assert torch.allclose(got, expected, atol=1e-6)


# ------------------------------------------------ the device formulation, checked on the CPU
@given(
    ids=st.lists(st.sampled_from([PAD, ALL, 0, 1, 2]), min_size=1, max_size=12),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
    sign=st.sampled_from([1.0, -1.0]),
    jw=st.floats(0.0, 2.0),
    gamma=st.floats(0.1, 2.0),
    as_int=st.booleans(),
)
def test_host_weights_are_the_table_gathered_bit_for_bit(
    ids: list[int], dtype: torch.dtype, sign: float, jw: float, gamma: float, as_int: bool
) -> None:
    """The weights of host ids (a cached column for one id, numpy's gather of the table's
    bits otherwise) are the table's entries exactly, in the logits' dtype (bf16 included)."""
    from remix_data.losses import _weights, row_weights

    b, count = len(ids), 3
    like = torch.zeros(count + 1, b, dtype=dtype)
    table = torch.as_tensor(sign * (row_weights(count, jw, gamma) / b), dtype=dtype)
    expected = table[:, torch.tensor(ids) % (count + 3)]
    if as_int:
        expected = table[:, [ids[0] % (count + 3)]]
    modality: torch.Tensor | int = ids[0] if as_int else torch.tensor(ids, dtype=torch.int32)
    got = _weights(modality, b, count, jw, gamma, like, sign)
    assert got.dtype == dtype and got.shape[0] == count + 1
    exact = {"rtol": 0.0, "atol": 0.0, "equal_nan": True}
    torch.testing.assert_close(got.expand(count + 1, b), expected.expand(count + 1, b), **exact)
    like3 = like[:, :, None]  # the device formulation's shape: a trailing dimension of 1
    assert _weights(modality, b, count, jw, gamma, like3, sign).shape[2] == 1


@given(
    ids=st.lists(st.sampled_from([PAD, ALL, 0, 1, 2]), min_size=1, max_size=12),
    uniform=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_the_device_formulation_gives_the_host_loss_and_gradients(
    ids: list[int], uniform: bool, dtype: torch.dtype
) -> None:
    """On a device the loss is a log_softmax and a gather of the targets with negated
    weights: run here on CPU tensors, it gives the host formulation's loss and gradients."""
    from remix_data.losses import _weighted_sum

    if uniform:
        ids = [ids[0]] * len(ids)
    b = len(ids)
    gen = torch.Generator().manual_seed(b)
    made = [(torch.randn(b, 4, generator=gen, dtype=dtype) * 3).requires_grad_() for _ in range(4)]
    target = torch.randint(0, 4, (b,), generator=gen)
    results = []
    for gather in (False, True):
        logits = [x.detach().clone().requires_grad_() for x in made]
        loss = _weighted_sum(logits, target, torch.tensor(ids), 3, 0.5, 1.5, gather)
        loss.backward()
        results.append((loss.detach(), [x.grad for x in logits]))
    (host, host_grads), (device, device_grads) = results
    torch.testing.assert_close(device, host, rtol=1e-6, atol=1e-7)
    for got, expected in zip(device_grads, host_grads):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    pad = torch.tensor([m == PAD for m in ids])
    assert all(float(g[pad].abs().sum()) == 0.0 for g in device_grads)  # a repeat trains nothing
