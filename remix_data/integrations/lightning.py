"""Lightning: a callback that advances the remix epoch and feeds outputs back.

Lightning needs three things from a remix setup, and :class:`RemixCallback`
checks the first two when training starts:

- ``Trainer(use_distributed_sampler=False)`` under DDP: otherwise Lightning tries
  to inject a ``DistributedSampler`` into the batch sampler. The
  :class:`~remix_data.ReassemblingBatchSampler` shards by itself (build it in
  ``train_dataloader()``, where ``self.trainer.world_size`` and
  ``self.trainer.global_rank`` are known).
- ``Trainer(reload_dataloaders_every_n_epochs=1)``: Lightning counts an epoch's
  batches (``len(loader)``) when it loads the loader, and stops the epoch there;
  a remix epoch has another count than the previous epoch. Return the *same*
  ``DataLoader`` from ``train_dataloader()`` every time (build it once), so
  workers and the plan survive, and call
  ``loader.batch_sampler.set_epoch(self.trainer.current_epoch)`` there, so the
  count Lightning reads is the new epoch's (this also makes resuming from a
  checkpoint plan the right epoch).
- Lightning calls ``set_epoch`` on ``loader.sampler`` and
  ``loader.batch_sampler.sampler`` only, never on the batch sampler itself: the
  callback does it.

What the callback does: at the end of each training epoch it (optionally) runs
the paper's scoring pass and calls ``set_epoch(next epoch)``, which snapshots
the next epoch's assignment (under DDP: the one ``all_reduce`` of the epoch, so
a checkpoint written after it holds every rank's scores); after each training
step it feeds the unimodal outputs that ``training_step`` returned under
``outputs_key`` back to the filter (online scoring, no extra forward pass); it
saves the filter in Lightning checkpoints.

Example (a ``LightningModule`` and its hooks; see ``docs/recipes.md`` for the whole
recipe)::

    def train_dataloader(self):
        if self.loader is None:
            sampler = ReassemblingBatchSampler(
                self.filter, 64, warmup_epochs=2,
                num_replicas=self.trainer.world_size, rank=self.trainer.global_rank,
                accumulation_steps=self.trainer.accumulate_grad_batches)
            self.loader = DataLoader(self.data, batch_sampler=sampler)
        self.loader.batch_sampler.set_epoch(self.trainer.current_epoch)
        return self.loader

    def training_step(self, batch, batch_idx):
        sample, index, modality = batch
        fused, heads = self(sample, modality)
        loss = remix_loss(fused, heads, sample["label"], modality, self.filter)
        return {"loss": loss, "remix_outputs": heads}  # {modality name: [B, C] logits}

    trainer = Trainer(use_distributed_sampler=False, reload_dataloaders_every_n_epochs=1,
                      callbacks=[RemixCallback(model.filter)])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from ..decoupler import ModalityDecoupler
from ..distributed import is_distributed
from ..filter import HardSampleFilter
from ..sampler import ReassemblingBatchSampler
from ..scoring import scoring_pass

__all__ = ["RemixCallback", "decoupler_keys"]

#: ``score_fn(pl_module, sample)`` for the scoring pass: ``{modality: logits}`` or
#: ``(outputs, targets)``, as :func:`~remix_data.scoring_pass` accepts.
LightningScoreFn = Callable[[pl.LightningModule, Any], Any]


def decoupler_keys(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, modality)`` of a collated :class:`~remix_data.ModalityDecoupler` batch.

    Example:
        >>> import torch
        >>> decoupler_keys(({"a": torch.zeros(2, 3)}, torch.tensor([4, 7]), torch.tensor([1, 1])))
        (tensor([4, 7]), tensor([1, 1]))
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[1], batch[2]
    raise TypeError(
        "the batch should be (sample, index, modality) as a ModalityDecoupler yields it; "
        f"got {type(batch).__name__}: pass keys=... to RemixCallback to extract them"
    )


class RemixCallback(pl.Callback):
    """Advance the remix epoch, feed per-sample outputs back, checkpoint the filter.

    Args:
        filter: the :class:`~remix_data.HardSampleFilter` of the training loader's
            :class:`~remix_data.ReassemblingBatchSampler`.
        outputs_key: key of ``training_step``'s returned dict holding ``{modality
            name: [B, C] logits}`` (or ``[B]`` losses with ``score="loss"``), or a
            pair ``(outputs, targets)``. Steps that return no such key feed nothing.
        keys: extracts ``(index, modality)`` tensors from a batch (default:
            :func:`decoupler_keys`). The modality makes masked rows never
            overwrite a score.
        score_fn: when given, the paper's scoring pass runs at the end of every
            epoch that precedes a remix epoch: ``score_fn(pl_module, sample)`` on
            each unmasked batch of ``score_data`` (moved to the module's device),
            module in eval mode, no grad.
        score_data: the :class:`~remix_data.ModalityDecoupler` to score (needed
            with ``score_fn``).
        score_kwargs: more arguments for :func:`~remix_data.scoring_pass`
            (``batch_size``, ``fraction``, ``num_workers``, ``progress`` ...).

    The sampler is found as ``trainer.train_dataloader.batch_sampler``.
    ``on_train_start`` raises ``ValueError`` when it is not a
    :class:`~remix_data.ReassemblingBatchSampler` over ``filter``, when it does not
    shard for the trainer (``num_replicas``/``rank``), when its
    ``accumulation_steps`` differ from the trainer's ``accumulate_grad_batches``,
    or when ``reload_dataloaders_every_n_epochs`` is not 1; each epoch start raises
    ``RuntimeError`` if Lightning would run another number of batches than the
    epoch's plan holds.
    """

    def __init__(
        self,
        filter: HardSampleFilter,
        *,
        outputs_key: str = "remix_outputs",
        keys: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] = decoupler_keys,
        score_fn: LightningScoreFn | None = None,
        score_data: ModalityDecoupler | None = None,
        score_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(filter, HardSampleFilter):
            raise TypeError(f"filter should be a HardSampleFilter, but got filter={filter!r}")
        if score_fn is not None and not isinstance(score_data, ModalityDecoupler):
            raise ValueError(
                "score_fn needs score_data, the ModalityDecoupler to score, "
                f"but got score_data={score_data!r}"
            )
        self.filter = filter
        self.outputs_key = outputs_key
        self.keys = keys
        self.score_fn = score_fn
        self.score_data = score_data
        self.score_kwargs = dict(score_kwargs or {})

    # ------------------------------------------------------------------ checks
    def sampler(self, trainer: pl.Trainer) -> ReassemblingBatchSampler:
        """The training loader's batch sampler (checked to be a remix sampler)."""
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if not isinstance(sampler, ReassemblingBatchSampler) or sampler.filter is not self.filter:
            raise ValueError(
                "RemixCallback needs a train DataLoader with batch_sampler="
                "ReassemblingBatchSampler(filter, ...) over the callback's filter, "
                f"but got batch_sampler={sampler!r}"
            )
        return sampler

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        reload = getattr(trainer, "reload_dataloaders_every_n_epochs", None)
        if reload != 1:
            raise ValueError(
                "RemixCallback needs Trainer(reload_dataloaders_every_n_epochs=1): Lightning "
                "fixes an epoch's batch count when it loads the loader, and remix epochs "
                f"change it; got reload_dataloaders_every_n_epochs={reload}"
            )
        connector = getattr(trainer, "_accelerator_connector", None)
        if trainer.world_size > 1 and getattr(connector, "use_distributed_sampler", False):
            raise ValueError(
                "RemixCallback needs Trainer(use_distributed_sampler=False) with "
                f"{trainer.world_size} processes: the ReassemblingBatchSampler shards itself"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = self.sampler(trainer)
        sampler.check_sharding(
            trainer.world_size,
            trainer.global_rank,
            trainer.accumulate_grad_batches,
            owner="trainer",
        )
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:  # -1: no limit
            sampler.check_run_length(trainer.max_epochs, owner="trainer", setting="max_epochs")

    # ------------------------------------------------------------------ epochs
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = self.sampler(trainer)
        sampler.set_epoch(trainer.current_epoch)  # the epoch's iterator is made after this
        planned, limit = len(sampler), trainer.num_training_batches
        full = isinstance(trainer.limit_train_batches, float) and trainer.limit_train_batches == 1.0
        if full and planned != limit:
            raise RuntimeError(
                f"Lightning will run {limit} batches in epoch {trainer.current_epoch}, but the "
                f"remix plan holds {planned}: return the same DataLoader from "
                "train_dataloader() and call loader.batch_sampler.set_epoch("
                "self.trainer.current_epoch) there"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        following = trainer.current_epoch + 1
        max_epochs = trainer.max_epochs
        if trainer.should_stop or (max_epochs is not None and 0 <= max_epochs <= following):
            return
        sampler = self.sampler(trainer)
        if self.score_fn is not None and not sampler.is_warmup(following):
            self._score(pl_module, following)
        # Snapshot (and, under DDP, combine) the next epoch's assignment now, so that a
        # checkpoint written after this hook holds the scores of every rank.
        sampler.set_epoch(following)

    def _score(self, pl_module: pl.LightningModule, epoch: int) -> None:
        assert self.score_fn is not None and self.score_data is not None
        score_fn, device = self.score_fn, pl_module.device
        was_training = pl_module.training
        pl_module.eval()
        kwargs = {"progress": False, **self.score_kwargs, "epoch": epoch}
        try:
            scoring_pass(
                lambda sample: score_fn(pl_module, move_data_to_device(sample, device)),
                self.score_data,
                self.filter,
                **kwargs,
            )
        finally:
            pl_module.train(was_training)

    # ------------------------------------------------------------------- steps
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not isinstance(outputs, Mapping) or self.outputs_key not in outputs:
            return
        fed = outputs[self.outputs_key]
        index, modality = self.keys(batch)
        if isinstance(fed, tuple):
            scores, targets = fed
            self.filter.update(index, scores, targets, modality=modality)
        else:
            self.filter.update(index, fed, modality=modality)

    # ------------------------------------------------------------------- state
    _interrupted = False

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Checkpoint callbacks run after this one (Lightning orders them last):
        # a checkpoint written now must not wait in a collective for other ranks.
        self._interrupted = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._interrupted = False

    def state_dict(self) -> dict[str, Any]:
        """``{"filter": state}``: the filter's state gathered from every rank.

        Lightning calls it on every rank when it writes a checkpoint, so under
        DDP the filter's :meth:`~remix_data.HardSampleFilter.state_dict` runs as
        the collective that puts every rank's unsynced scores into rank 0's
        checkpoint. After an exception (Lightning's ``on_exception``, e.g. an
        ``OnExceptionCheckpoint``) the other ranks may never reach the
        collective: the state is then this rank's alone, and a
        :class:`~remix_data.RemixWarning` says so when it lacks unsynced
        entries of other ranks. Call ``trainer.save_checkpoint`` on every rank
        (Lightning's checkpoint callbacks do): on one rank alone the gather
        waits for the others until the process group's timeout.
        """
        filt = self.filter
        if self._interrupted and filt.sync_mode == "auto" and is_distributed(filt.process_group):
            return {"filter": filt.local_state_dict("a checkpoint written after an exception")}
        return {"filter": filt.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.filter.load_state_dict(state_dict["filter"])
