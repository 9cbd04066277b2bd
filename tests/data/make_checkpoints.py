"""Write the checkpoints of ``test_old_checkpoints.py`` (run once, with the code of 26fb052).

``python tests/data/make_checkpoints.py`` saves a filter state (scores with NaN,
fresh flags, a snapshot with filtered samples, reweighting weights, labels,
smoothing, two epochs of history, counters) and a sampler state resumed in the
middle of a remix epoch, both with ``torch.save``. Rerunning it with later code
would overwrite the evidence that old checkpoints load: do not.
"""

from __future__ import annotations

from pathlib import Path

import torch

from remix_data import HardSampleFilter, ReassemblingBatchSampler

HERE = Path(__file__).resolve().parent
N, NAMES = 24, ("audio", "video")
LABELS = [i % 3 for i in range(N)]


def make_filter() -> HardSampleFilter:
    return HardSampleFilter(
        N, NAMES, keep_ratio=0.75, reweight=True, labels=LABELS, smoothing=0.25,
        nonfinite="ignore",
    )  # fmt: skip


def main() -> None:
    gen = torch.Generator().manual_seed(7)
    filt = make_filter()
    sampler = ReassemblingBatchSampler(filt, 5, warmup_epochs=1, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor([i for i, _ in batch])
            ids = torch.tensor([m for _, m in batch])
            heads = {m: torch.randn(len(batch), 4, generator=gen) for m in NAMES}
            heads["audio"][0, 0] = float("nan")  # an ignored entry
            filt.update(
                torch.cat([index, index[:1]]),
                {m: torch.cat([h, h[:1]]) for m, h in heads.items()},
                modality=torch.cat([ids, ids[:1]]),
            )  # a duplicate
    sampler.set_epoch(3)
    it = iter(sampler)
    next(it)
    next(it)
    torch.save(filt.state_dict(), HERE / "filter_26fb052.pt")
    torch.save(sampler.state_dict(), HERE / "sampler_26fb052.pt")


if __name__ == "__main__":
    main()
