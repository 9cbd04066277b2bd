"""The paper's scoring pass helper over a real DataLoader."""

from __future__ import annotations

import torch

from remix_data import HardSampleFilter, ModalityDecoupler, confidence, scoring_pass


def _data(n: int) -> ModalityDecoupler:
    items = [{"a": torch.tensor([float(i)]), "b": torch.tensor([float(n - i)])} for i in range(n)]
    return ModalityDecoupler(items, ("a", "b"))


def _heads(sample: dict) -> dict:
    a, b = sample["a"], sample["b"]
    return {"a": torch.cat([a, -a], 1), "b": torch.cat([b, -b], 1)}


def test_full_pass_scores_every_sample_with_unmasked_inputs() -> None:
    n = 23
    filt = HardSampleFilter(n, ("a", "b"))
    assert scoring_pass(_heads, _data(n), filt, batch_size=5, progress=False) == n
    values = filt.state_dict()["values"]
    i = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    assert torch.allclose(values[0], confidence(torch.cat([i, -i], 1)))
    assert torch.allclose(values[1], confidence(torch.cat([n - i, i - n], 1)))
    assert filt.stats()["unscored"] == 0


def test_fraction_scores_a_reproducible_random_subset_with_workers() -> None:
    n = 40
    seen = []
    for _ in range(2):
        filt = HardSampleFilter(n, ("a", "b"))
        count = scoring_pass(
            _heads, _data(n), filt, fraction=0.25, seed=7, epoch=3, progress=False, num_workers=2
        )
        assert count == 10
        scored = (~torch.isnan(filt.state_dict()["values"][0])).nonzero().squeeze(1).tolist()
        assert len(scored) == 10
        seen.append(scored)
    assert seen[0] == seen[1]
    other = HardSampleFilter(n, ("a", "b"))
    scoring_pass(_heads, _data(n), other, fraction=0.25, seed=7, epoch=4, progress=False)
    assert (~torch.isnan(other.state_dict()["values"][0])).nonzero().squeeze(1).tolist() != seen[0]


def test_loss_scoring_with_targets_from_the_function() -> None:
    n = 6
    filt = HardSampleFilter(n, ("a", "b"), score="loss")

    def fn(sample: dict) -> tuple[dict, torch.Tensor]:
        return _heads(sample), torch.zeros(len(sample["a"]), dtype=torch.long)

    scoring_pass(fn, _data(n), filt, batch_size=4, progress=False)
    # class 0 logit is +x: a is easy for large i, b for small i
    assert filt.assignment().tolist() == [0, 0, 0, 1, 1, 1]


def test_ranks_score_disjoint_shards_that_cover_the_chosen_samples() -> None:
    n, world = 17, 3
    shards = []
    for rank in range(world):
        filt = HardSampleFilter(n, ("a", "b"))
        count = scoring_pass(
            _heads, _data(n), filt, batch_size=4, progress=False, num_replicas=world, rank=rank
        )
        scored = (~torch.isnan(filt.state_dict()["values"][0])).nonzero().squeeze(1).tolist()
        assert count == len(scored)
        shards.append(set(scored))
    assert set().union(*shards) == set(range(n))
    assert sum(len(s) for s in shards) == n
