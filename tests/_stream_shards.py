"""WebDataset tar shards for the streaming tests: sample ``i`` holds ``i + 1`` per modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_shards(folder: Path, n: int, shards: int) -> list[str]:
    """``shards`` tar shards of ``n`` samples dealt round-robin; key ``%06d`` is the id."""
    import webdataset as wds

    urls = []
    for s in range(shards):
        url = str(folder / f"shard-{s:02d}.tar")
        with wds.TarWriter(url) as sink:
            for i in range(s, n, shards):
                sink.write(
                    {
                        "__key__": f"{i:06d}",
                        "audio.npy": np.full(2, i + 1, np.float32),
                        "video.npy": np.full(3, i + 1, np.float32),
                        "cls": i % 3,
                    }
                )
        urls.append(url)
    return urls
