"""Hugging Face Accelerate: keep "same modality on every rank" through Accelerate.

Do **not** pass a remix loader to ``accelerator.prepare``. With more than one
process, ``accelerate.data_loader.prepare_data_loader`` wraps the loader's batch
sampler in ``BatchSamplerShard``, which deals the batches out round-robin
(batch ``t`` goes to process ``t % num_processes``). Consecutive batches of a
remix epoch belong to one modality only until the plan switches, so at the
switch the ranks train different modalities in the same step; a step whose last
batch is short is skipped on every rank (its samples are lost), and with
``even_batches=True`` (the default) the final short batch is completed with
keys from the first batches, which mixes modalities inside one batch. If the
sampler was already sharded (``num_replicas`` from ``torch.distributed``), the
shard is sharded a second time: each rank sees half of its batches.
``BatchSamplerShard`` also hides the sampler from ``DataLoaderShard.set_epoch``,
so the epoch never advances.

:func:`prepare_loader` is the supported way instead: each process builds its own
:class:`~remix_data.ReassemblingBatchSampler` with ``num_replicas`` and ``rank``
from the accelerator (the sampler already shards, pads and evens the epoch so
that every step is unimodal on all ranks), and the helper lets Accelerate add
what it adds to every loader (device placement, the end-of-loader signal that
``accelerator.accumulate`` syncs on, ``set_epoch`` forwarding, ``save_state``
with ``use_stateful_dataloader``) without re-sharding.

A flags-only alternative, when one global plan is wanted: a sampler with
``num_replicas=1, rank=0, drop_last=True`` whose ``batch_size`` is the global
batch (a multiple of the number of processes) and
``Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))``.
Every process then takes a slice of the same global batch. ``drop_last=True`` is
needed because ``split_batches`` skips short batches inside the epoch and pads
the last one with keys from the first batch.

Example (one process; the same code runs under ``accelerate launch`` or
``torchrun``):
    >>> import torch
    >>> from accelerate import Accelerator
    >>> from torch.utils.data import DataLoader
    >>> from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
    >>> accelerator = Accelerator(cpu=True)
    >>> base = [{"a": torch.randn(3), "b": torch.randn(2)} for _ in range(10)]
    >>> filt = HardSampleFilter(len(base), ("a", "b"))
    >>> sampler = ReassemblingBatchSampler(
    ...     filt, batch_size=4, num_replicas=accelerator.num_processes,
    ...     rank=accelerator.process_index)
    >>> loader = prepare_loader(
    ...     accelerator, DataLoader(ModalityDecoupler(base, filt), batch_sampler=sampler))
    >>> loader.set_epoch(1)                # forwarded to the sampler
    >>> sampler.epoch, [m.tolist()[0] for _, _, m in loader]
    (1, [0, 1])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

from ..sampler import ReassemblingBatchSampler

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["prepare_loader"]


def prepare_loader(
    accelerator: Accelerator,
    loader: DataLoader[Any],
    *,
    device_placement: bool | None = None,
) -> DataLoader[Any]:
    """Prepare a remix ``DataLoader`` for Accelerate without re-sharding its batches.

    Args:
        accelerator: the ``accelerate.Accelerator`` of this process.
        loader: a ``DataLoader`` whose ``batch_sampler`` is a
            :class:`~remix_data.ReassemblingBatchSampler` built with
            ``num_replicas=accelerator.num_processes`` and
            ``rank=accelerator.process_index`` (the defaults under
            ``torch.distributed`` once the accelerator exists), and, when the
            accelerator accumulates gradients, with
            ``accumulation_steps=accelerator.gradient_accumulation_steps``.
        device_placement: move batches to ``accelerator.device``; defaults to the
            accelerator's ``device_placement``.

    Returns:
        Accelerate's ``DataLoaderShard`` around the loader's own batch sampler,
        registered with the accelerator (as ``accelerator.prepare`` would do) so
        that ``save_state``/``load_state`` and ``accumulate`` know it. Call
        ``loader.set_epoch(epoch)`` on it before each epoch (it forwards to the
        sampler; without the call it counts epochs itself, starting at 0).

    ``split_batches``, ``dispatch_batches``, ``even_batches`` and
    ``use_seedable_sampler`` of the accelerator are deliberately not applied: the
    sampler already gives each process its own unimodal share of every step and
    the same number of batches. Raises ``TypeError`` for another batch sampler and
    ``ValueError`` when the sampler's world or accumulation disagrees with the
    accelerator's.
    """
    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, ReassemblingBatchSampler):
        raise TypeError(
            "loader should be a DataLoader with batch_sampler=ReassemblingBatchSampler(...), "
            f"but got batch_sampler={sampler!r}"
        )
    sampler.check_sharding(
        accelerator.num_processes,
        accelerator.process_index,
        accelerator.gradient_accumulation_steps,
        owner="accelerator",
    )
    from accelerate.data_loader import prepare_data_loader

    placement = accelerator.device_placement if device_placement is None else device_placement
    # One "process" for Accelerate's sharding logic: it keeps our batch sampler as is
    # (``BatchSamplerShard`` is only used when num_processes != 1).
    prepared = prepare_data_loader(
        loader,
        accelerator.device,
        num_processes=1,
        process_index=0,
        split_batches=False,
        put_on_device=placement,
        rng_types=None,
        dispatch_batches=False,
        even_batches=True,
        use_seedable_sampler=False,
        non_blocking=accelerator.non_blocking,
        use_stateful_dataloader=accelerator.use_stateful_dataloader,
    )
    if prepared.batch_sampler is not sampler:  # e.g. Megatron-LM or XLA wrappers
        raise ValueError(
            f"Accelerate replaced the batch sampler for distributed_type="
            f"{accelerator.distributed_type}; remix_data supports CPU, multi-GPU and DDP setups"
        )
    # Mark it as ``accelerator.prepare`` marks what it prepared, so that the public
    # ``prepare_data_loader`` only registers it (save_state, free_memory) and any later
    # ``accelerator.prepare(loader)`` leaves it alone.
    prepared._is_accelerate_prepared = True
    registered: DataLoader[Any] = accelerator.prepare_data_loader(prepared)
    return registered
