"""Hugging Face ``transformers.Trainer``: :class:`RemixTrainer`, a Trainer that remixes.

The Trainer owns the loader, the loss, the epoch loop and the checkpoints; each
needs a remix-aware version, and :class:`RemixTrainer` supplies all four:

- **Loader.** ``get_train_dataloader`` returns one ``DataLoader`` over the
  :class:`~remix_data.ModalityDecoupler` with the
  :class:`~remix_data.ReassemblingBatchSampler` as its batch sampler, built once
  (persistent workers survive), with the ``dataloader_*`` options of
  ``TrainingArguments`` and handed to Accelerate through
  :func:`~remix_data.integrations.accelerate.prepare_loader`, never
  ``accelerator.prepare`` (which would deal the batches out round robin and
  break "one modality per optimiser step"). Each batch reaches the model step as
  the collated sample dict plus ``remix_index`` and ``remix_modality``.
- **Loss.** ``compute_loss`` calls ``model(**sample)`` (without the labels, and
  with ``modality=`` when ``forward`` takes it, for feature-level masking), reads
  the fused logits and every head's logits from the output, returns
  :func:`~remix_data.remix_loss` and feeds the heads back with
  :meth:`~remix_data.HardSampleFilter.update` (online scoring; no extra forward
  pass).
- **Epochs.** The Trainer counts the batches of an epoch once, before training;
  a remix epoch has another count than a warm-up epoch and than the previous
  remix epoch. Each epoch starts with the sampler's ``set_epoch`` (after an
  optional scoring pass) and runs exactly that epoch's batches; ``max_steps``
  (and the learning-rate schedule) is planned over an upper bound of the steps
  (:func:`planned_steps`), the same before and after a resume.
- **Checkpoints.** Every checkpoint holds ``remix_state.pt`` (the filter's
  state, gathered from every rank, and the sampler's position at the
  optimiser step); ``train(resume_from_checkpoint=...)`` restores both and
  continues with exactly the batches the uninterrupted run trains.

Gradient accumulation and DDP: build the sampler with
``num_replicas=args.world_size``, ``rank=args.process_index`` and
``accumulation_steps=args.gradient_accumulation_steps`` (checked); every
micro-batch of an optimiser step then has one modality on every rank.

The epoch and resume logic overrides three internal methods of ``Trainer``
(``_init_training_state``, ``_run_epoch``, ``_save_checkpoint``); their
signatures are checked at construction, and the versions this is tested with are
pinned in the ``transformers`` extra.

Example (one process; the same code runs under ``torchrun``):
    >>> import os, tempfile, torch
    >>> from torch import nn
    >>> from transformers import TrainingArguments
    >>> from remix_data import HardSampleFilter, ModalityDecoupler, ReassemblingBatchSampler
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.enc = nn.ModuleDict({"a": nn.Linear(3, 4), "b": nn.Linear(2, 4)})
    ...         self.heads = nn.ModuleDict({m: nn.Linear(4, 2) for m in self.enc})
    ...         self.fused = nn.Linear(8, 2)
    ...     def forward(self, a, b):
    ...         f = {"a": self.enc["a"](a), "b": self.enc["b"](b)}
    ...         heads = {m: self.heads[m](v) for m, v in f.items()}
    ...         return {"logits": self.fused(torch.cat([f["a"], f["b"]], 1)), "head_logits": heads}
    >>> base = [{"a": torch.randn(3), "b": torch.randn(2), "labels": i % 2} for i in range(12)]
    >>> filt = HardSampleFilter(len(base), ("a", "b"))
    >>> args = TrainingArguments(tempfile.mkdtemp(), num_train_epochs=3, use_cpu=True,
    ...                          report_to="none", save_strategy="no")
    >>> sampler = ReassemblingBatchSampler(filt, 4, warmup_epochs=1)
    >>> trainer = RemixTrainer(Net(), args, train_dataset=ModalityDecoupler(base, filt),
    ...                        sampler=sampler)
    >>> trainer.train()  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    TrainOutput(global_step=...)
    >>> [record["epoch"] for record in filt.history], sum(filt.stats()["counts"].values())
    ([1, 2], 12)
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..collate import RemixCollate
from ..decoupler import ModalityDecoupler
from ..filter import HardSampleFilter
from ..losses import remix_loss
from ..sampler import ReassemblingBatchSampler
from ..scoring import scoring_pass
from .accelerate import prepare_loader

__all__ = [
    "INDEX_KEY",
    "MODALITY_KEY",
    "STATE_NAME",
    "RemixTrainer",
    "default_outputs",
    "planned_steps",
]

#: Key of the sample indices in the batch dict the Trainer sees.
INDEX_KEY = "remix_index"
#: Key of the modality ids in the batch dict the Trainer sees.
MODALITY_KEY = "remix_modality"
#: File of the remix state inside each Trainer checkpoint folder.
STATE_NAME = "remix_state.pt"

#: The Trainer internals :class:`RemixTrainer` overrides, with the parameters it relies on.
_INTERNALS = {
    "_init_training_state": (
        "max_steps",
        "num_update_steps_per_epoch",
        "num_train_epochs",
        "resume_from_checkpoint",
        "trial",
    ),
    "_run_epoch": ("epoch", "steps_in_epoch", "num_update_steps_per_epoch"),
    "_save_checkpoint": ("model", "trial"),
}

#: ``remix_outputs(model_output) -> (fused logits [B, C], {modality: [B, C] logits})``.
OutputsFn = Callable[[Any], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
#: ``score_fn(model, sample) -> {modality: logits}`` for the scoring pass.
ScoreFn = Callable[[nn.Module, Any], Any]


def default_outputs(outputs: Any) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
    """``(fused, heads)`` from a model output: ``outputs["logits"]`` and
    ``outputs["head_logits"]`` (a dict or a ``ModelOutput``), or a pair ``(fused, heads)``.

    Example:
        >>> import torch
        >>> fused, heads = default_outputs({"logits": torch.zeros(2, 3), "head_logits": {"a": 1}})
        >>> fused.shape, heads
        (torch.Size([2, 3]), {'a': 1})
    """
    if isinstance(outputs, Mapping) and "logits" in outputs and "head_logits" in outputs:
        return outputs["logits"], outputs["head_logits"]
    if isinstance(outputs, (tuple, list)) and len(outputs) == 2 and isinstance(outputs[1], Mapping):
        return outputs[0], outputs[1]
    raise TypeError(
        "the model should return {'logits': fused [B, C], 'head_logits': {modality: [B, C]}} "
        f"or a pair (fused, heads), but returned {type(outputs).__name__}: "
        "pass remix_outputs=... to RemixTrainer to read another output"
    )


def planned_steps(sampler: ReassemblingBatchSampler, epochs: int) -> list[int]:
    """An upper bound of the optimiser steps of each epoch ``0 .. epochs-1`` on every rank.

    A warm-up epoch has ``ceil(N / G)`` steps of ``G = num_replicas *
    accumulation_steps * batch_size`` samples; a remix epoch splits the samples
    into one group per modality (plus one joint group with ``joint_fraction``),
    each with its own short or padded last step, so it has at most ``ceil(N / G)
    + groups - 1``. The bound depends on the configuration only, so a resumed
    run plans the same ``max_steps`` as the uninterrupted one.

    Example:
        >>> from remix_data import HardSampleFilter
        >>> sampler = ReassemblingBatchSampler(HardSampleFilter(10, ("a", "b")), 4, warmup_epochs=1)
        >>> planned_steps(sampler, 3)
        [3, 4, 4]
    """
    total = sampler.filter.num_samples
    step = sampler.num_replicas * sampler.accumulation_steps * sampler.batch_size
    groups = len(sampler.filter.modalities) + (1 if sampler.joint_fraction > 0 else 0)
    joint = math.ceil(total / step)
    return [joint if sampler.is_warmup(e) else joint + groups - 1 for e in range(epochs)]


def _check_internals() -> None:
    for name, params in _INTERNALS.items():
        method = getattr(Trainer, name, None)
        found = set(inspect.signature(method).parameters) if callable(method) else set()
        if not set(params) <= found:
            import transformers

            raise ImportError(
                f"RemixTrainer needs Trainer.{name}({', '.join(params)}), which transformers "
                f"{transformers.__version__} does not have: install the version of the "
                "remix-data[transformers] extra"
            )


class RemixTrainer(Trainer):
    """A ``transformers.Trainer`` that trains on remix batches and checkpoints the filter.

    Args:
        model: the model; ``forward`` takes the sample's fields as keyword
            arguments (a field masked with ``mask="drop"`` is absent), plus
            ``modality`` (the ``[B]`` ids) if its signature names it, and returns
            what ``remix_outputs`` reads.
        args: the ``TrainingArguments``; epoch-based (``max_steps=-1``, an integer
            ``num_train_epochs``), ``ignore_data_skip=False``.
        train_dataset: the :class:`~remix_data.ModalityDecoupler` over your
            dataset of dict samples.
        sampler: the :class:`~remix_data.ReassemblingBatchSampler` over the
            decoupler's filter, built with ``num_replicas=args.world_size``,
            ``rank=args.process_index`` and
            ``accumulation_steps=args.gradient_accumulation_steps``.
        data_collator: collates the list of samples (``None``: torch's
            ``default_collate``); wrapped in :class:`~remix_data.RemixCollate`.
        label_key: the field of the sample that holds the class index.
        remix_outputs: ``(fused, {modality: logits})`` from the model's output
            (default :func:`default_outputs`).
        joint_weight, gamma: the weights of :func:`~remix_data.remix_loss`.
        online_scoring: feed every training step's head logits back to the filter.
        score_fn: the paper's scoring pass instead (or as well): before every
            remix epoch, ``score_fn(model, sample)`` on every unmasked batch of
            ``train_dataset`` under ``torch.no_grad()``, the model in eval mode.
        score_kwargs: more arguments for :func:`~remix_data.scoring_pass`.
        **kwargs: the other ``Trainer`` arguments (``callbacks``,
            ``eval_dataset``, ``optimizers`` ...).

    Raises ``TypeError`` for a dataset or sampler of another kind and
    ``ValueError`` for a sampler over another filter, one that does not shard or
    accumulate as ``args`` say, a step-based ``args.max_steps``, a fractional
    ``num_train_epochs`` or ``ignore_data_skip=True``.
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments,
        *,
        train_dataset: ModalityDecoupler,
        sampler: ReassemblingBatchSampler,
        data_collator: Callable[[list[Any]], Any] | None = None,
        label_key: str = "labels",
        remix_outputs: OutputsFn = default_outputs,
        joint_weight: float = 0.5,
        gamma: float = 1.0,
        online_scoring: bool = True,
        score_fn: ScoreFn | None = None,
        score_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _check_internals()
        if not isinstance(train_dataset, ModalityDecoupler):
            raise TypeError(
                "train_dataset should be a ModalityDecoupler, "
                f"but got train_dataset={type(train_dataset).__name__}"
            )
        if not isinstance(sampler, ReassemblingBatchSampler):
            raise TypeError(f"sampler should be a ReassemblingBatchSampler, but got {sampler!r}")
        if len(train_dataset) != sampler.filter.num_samples:
            raise ValueError(
                f"train_dataset holds {len(train_dataset)} samples but the sampler's filter "
                f"{sampler.filter.num_samples}: build both from one HardSampleFilter"
            )
        if not isinstance(args, TrainingArguments):
            raise TypeError(f"args should be TrainingArguments, but got args={args!r}")
        if args.max_steps > 0:
            raise ValueError(
                "RemixTrainer trains whole epochs: leave max_steps at -1 and set "
                f"num_train_epochs, but got max_steps={args.max_steps}"
            )
        if args.num_train_epochs != int(args.num_train_epochs) or args.num_train_epochs < 1:
            raise ValueError(
                "num_train_epochs should be a positive whole number of epochs, "
                f"but got num_train_epochs={args.num_train_epochs}"
            )
        if args.ignore_data_skip:
            raise ValueError(
                "RemixTrainer resumes at the checkpoint's batch without reading the batches "
                "before it: leave ignore_data_skip=False, but got ignore_data_skip=True"
            )
        sampler.check_sharding(
            args.world_size, args.process_index, args.gradient_accumulation_steps, owner="trainer"
        )
        sampler.check_run_length(
            int(args.num_train_epochs), owner="trainer", setting="num_train_epochs"
        )
        if sampler.accumulation_steps != args.gradient_accumulation_steps:
            raise ValueError(
                f"the sampler accumulates {sampler.accumulation_steps} micro-batches per step, "
                f"so set gradient_accumulation_steps={sampler.accumulation_steps}, "
                f"but got gradient_accumulation_steps={args.gradient_accumulation_steps}"
            )
        if score_fn is not None and not callable(score_fn):
            raise TypeError(f"score_fn should be callable, but got score_fn={score_fn!r}")
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self.remix_sampler = sampler
        self.remix_filter: HardSampleFilter = sampler.filter
        self.remix_data = train_dataset
        self.remix_collate = RemixCollate(data_collator)
        self.label_key = label_key
        self.remix_outputs = remix_outputs
        self.joint_weight = joint_weight
        self.gamma = gamma
        self.online_scoring = online_scoring
        self.score_fn = score_fn
        self.score_kwargs = dict(score_kwargs or {})
        forward = getattr(model, "forward", model)
        self._takes_modality = "modality" in inspect.signature(forward).parameters
        self._loader: DataLoader[Any] | None = None
        # (epoch, optimiser steps done in it) restored from a checkpoint, until used.
        self._resume_at: tuple[int, int] | None = None
        self._epoch_start_step = 0

    # ---------------------------------------------------------------- loader
    def get_train_dataloader(self) -> DataLoader[Any]:
        """The remix loader (built once), prepared for Accelerate without re-sharding."""
        if self._loader is None:
            args = self.args
            workers = args.dataloader_num_workers
            options: dict[str, Any] = {
                "num_workers": workers,
                "pin_memory": args.dataloader_pin_memory,
                "persistent_workers": args.dataloader_persistent_workers and workers > 0,
            }
            if workers > 0 and args.dataloader_prefetch_factor is not None:
                options["prefetch_factor"] = args.dataloader_prefetch_factor
            loader = DataLoader(
                self.remix_data,
                batch_sampler=self.remix_sampler,
                collate_fn=_TrainerCollate(self.remix_collate),
                **options,
            )
            self._loader = prepare_loader(self.accelerator, loader)
        return self._loader

    def get_resumed_dataloader(self, dataloader: DataLoader[Any], num_batches: int) -> Any:
        """The loader itself: the sampler already starts at the checkpoint's batch."""
        return dataloader

    # ------------------------------------------------------------------ loss
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """:func:`~remix_data.remix_loss` of the batch; online ``update`` while training.

        A batch without ``remix_index`` (evaluation) counts as joint: every
        modality visible, nothing written to the filter.
        """
        sample = dict(inputs)
        index = sample.pop(INDEX_KEY, None)
        modality = sample.pop(MODALITY_KEY, -1)
        if self.label_key not in sample:
            raise ValueError(
                f"the batch should hold the labels under label_key={self.label_key!r}; "
                f"got keys {sorted(sample)}"
            )
        labels = sample.pop(self.label_key)
        if self._takes_modality:
            sample["modality"] = modality
        outputs = model(**sample)
        fused, heads = self.remix_outputs(outputs)
        loss = remix_loss(
            fused,
            heads,
            labels,
            modality,
            self.remix_filter,
            joint_weight=self.joint_weight,
            gamma=self.gamma,
        )
        if self.online_scoring and model.training and index is not None:
            detached = {m: h.detach() for m, h in heads.items()}
            self.remix_filter.update(index, detached, modality=modality)
        return (loss, outputs) if return_outputs else loss

    # --------------------------------------------------------------- epochs
    def set_initial_training_values(
        self, args: TrainingArguments, dataloader: DataLoader[Any]
    ) -> tuple[int, int, int, int, int, int | None, int]:
        """Trainer's values with ``max_steps`` from :func:`planned_steps` (an upper bound)."""
        _, _, examples, samples, total_batch, _, _ = super().set_initial_training_values(
            args, dataloader
        )
        epochs = int(args.num_train_epochs)
        steps = planned_steps(self.remix_sampler, epochs)
        per_epoch = max(steps)
        batches = per_epoch * args.gradient_accumulation_steps
        return epochs, per_epoch, examples, samples, total_batch, batches, sum(steps)

    def _init_training_state(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
        epochs, steps = super()._init_training_state(*args, **kwargs)
        if self._resume_at is None:
            return epochs, steps
        epoch, done = self._resume_at
        return epoch, done * self.args.gradient_accumulation_steps

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(super()._run_epoch).bind(*args, **kwargs)
        params = bound.arguments
        epoch = params["epoch"]
        resumed = self._resume_at is not None and self._resume_at[0] == epoch
        if not resumed and self.score_fn is not None and not self.remix_sampler.is_warmup(epoch):
            self._scoring_pass(epoch)
        self.remix_sampler.set_epoch(epoch)
        batches = len(self.remix_sampler)
        done = self._resume_at[1] if resumed and self._resume_at is not None else 0
        self._resume_at = None
        self._epoch_start_step = self.state.global_step - done
        params["steps_in_epoch"] = batches
        params["num_update_steps_per_epoch"] = batches // self.args.gradient_accumulation_steps
        return super()._run_epoch(*bound.args, **bound.kwargs)  # type: ignore[no-untyped-call]

    def _scoring_pass(self, epoch: int) -> None:
        model, score_fn = self.model, self.score_fn
        assert model is not None and score_fn is not None
        was_training = model.training
        model.eval()
        kwargs = {"progress": not self.args.disable_tqdm, **self.score_kwargs}
        try:
            scoring_pass(
                lambda sample: score_fn(model, self._prepare_inputs(sample)),
                self.remix_data,
                self.remix_filter,
                epoch=epoch,
                **kwargs,
            )
        finally:
            model.train(was_training)

    # ----------------------------------------------------------- checkpoints
    def remix_state(self) -> dict[str, Any]:
        """The filter's state (a collective under ``torch.distributed``: every rank
        calls it) and the sampler's position after the last optimiser step."""
        sampler = self.remix_sampler
        steps = self.state.global_step - self._epoch_start_step
        position = {**sampler.state_dict(), "yielded": steps * sampler.accumulation_steps}
        return {"filter": self.remix_filter.state_dict(), "sampler": position}

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        state = self.remix_state()
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            path = os.path.join(self._get_output_dir(trial=trial), folder, STATE_NAME)
            torch.save(state, path)

    def load_remix_state(self, checkpoint: str) -> None:
        """Restore the filter and the sampler from ``checkpoint``'s ``remix_state.pt``."""
        path = os.path.join(checkpoint, STATE_NAME)
        if not os.path.isfile(path):
            raise ValueError(
                f"resume_from_checkpoint={checkpoint!r} holds no {STATE_NAME}: "
                "it was not written by a RemixTrainer"
            )
        state = torch.load(path, weights_only=True)
        self.remix_filter.load_state_dict(state["filter"])
        position = state["sampler"]
        self.remix_sampler.load_state_dict(position)
        epoch, yielded = int(position["epoch"]), int(position["yielded"])
        if position["batches"] is not None and yielded == position["batches"]:
            epoch, yielded = epoch + 1, 0  # saved at the end of its epoch
        self._resume_at = (epoch, yielded // self.remix_sampler.accumulation_steps)

    def train(  # type: ignore[override]
        self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any
    ) -> Any:
        """``Trainer.train``; with ``resume_from_checkpoint`` the remix state is restored too."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)  # type: ignore[no-untyped-call]
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint found in output_dir={self.args.output_dir!r}")
        if isinstance(resume_from_checkpoint, str):
            self.load_remix_state(resume_from_checkpoint)
        elif resume_from_checkpoint is False:
            resume_from_checkpoint = None
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


class _TrainerCollate:
    """The Trainer's batch: the collated sample dict plus ``remix_index`` and
    ``remix_modality`` (picklable, for ``DataLoader`` workers)."""

    def __init__(self, collate: RemixCollate) -> None:
        self.collate = collate

    def __call__(self, batch: list[Any]) -> dict[str, Any]:
        sample, index, modality = self.collate(batch)
        if not isinstance(sample, Mapping):
            raise TypeError(
                "RemixTrainer needs dict samples (the Trainer calls model(**sample)), "
                f"but the collated batch is a {type(sample).__name__}"
            )
        return {**sample, INDEX_KEY: index, MODALITY_KEY: modality}
