"""Made tests/data/sampler_random_26fb052.pt: a mid-epoch sampler checkpoint (order="random")
saved by the code at commit 26fb052 (run from the repository root at that commit)."""

import torch

from remix_data import HardSampleFilter, ReassemblingBatchSampler


def main() -> None:
    names = ("audio", "video", "text")
    filt = HardSampleFilter(61, names, score="loss")
    gen = torch.Generator().manual_seed(5)
    filt.update(torch.arange(61), {m: torch.rand(61, generator=gen) for m in names})
    out = {"filter": None, "ranks": []}
    for rank in range(2):
        sampler = ReassemblingBatchSampler(
            filt,
            4,
            order="random",
            seed=11,
            num_replicas=2,
            rank=rank,
            joint_fraction=0.25,
        )
        sampler.set_epoch(3)
        full = [[list(k) for k in b] for b in sampler]
        sampler.set_epoch(3)
        it = iter(sampler)
        for _ in range(2):
            next(it)
        out["ranks"].append({"state": sampler.state_dict(), "batches": full})
    out["filter"] = filt.state_dict()
    torch.save(out, "tests/data/sampler_random_26fb052.pt")
    print([len(r["batches"]) for r in out["ranks"]], out["ranks"][0]["state"])


if __name__ == "__main__":
    main()
