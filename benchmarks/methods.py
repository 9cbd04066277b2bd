"""The training methods the jobs compare, and the one training step they share.

A method is a dict (:data:`METHOD_DEFAULTS` lists every key). The remix methods
come from :mod:`remix_data.presets` through :func:`from_preset`, so a preset
and the method of the same name cannot drift apart: ``remix`` is
:data:`~remix_data.presets.PAPER`, ``remix-skip+all`` is
:data:`~remix_data.presets.RECOMMENDED`, the others are those presets with one
field changed. ``skip_encoder`` is the preset's ``masking == "drop"`` (the model
skips the encoder of a dropped modality); ``masking="features"`` runs it and zeroes
its features (``"zeros"``, input zeros, is not a harness mode);
``masked_encoder_eval`` (the masked encoder runs in eval mode, so its
BatchNorm sees no masked batch) is a diagnostic no preset carries.

:func:`train_step` computes the loss of one batch with
:func:`remix_data.remix_loss` and masks features with
:func:`remix_data.mask_features`; :func:`make_loader` builds the loader of a
method from the library's public constructors.

Model-side balancing methods (OGM-GE, PMR: :mod:`benchmarks.balancing`) are a
``balancer`` dict on any method (``ogm-ge`` and ``pmr`` on joint's loss,
``remix-skip+ogm-ge``, ``remix-skip+all+pmr``, ...); :func:`train_step` hands a
balancer the features of joint batches only.

Adding a method: one entry in :data:`METHODS` (a preset through
:func:`from_preset`, or a dict of :data:`METHOD_DEFAULTS` keys); a new kind of
step: one key in :data:`METHOD_DEFAULTS` read by :func:`train_step`.

Example:
    >>> cfg = method_config("remix-skip", ("gyro", "acc"))
    >>> cfg["scoring"], cfg["skip_encoder"], cfg["modalities"]
    ('online', True, ('gyro', 'acc'))
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.balancing import Balancer, balancer_config, joint_batch
from remix_data import (
    ALL,
    HardSampleFilter,
    ModalityDecoupler,
    ReassemblingBatchSampler,
    mask_features,
    remix_loss,
)
from remix_data.presets import PAPER, RECOMMENDED, Preset
from remix_data.vocabulary import PAD

__all__ = [
    "BALANCED",
    "COMBINED_METHODS",
    "MAIN_METHODS",
    "METHODS",
    "METHOD_DEFAULTS",
    "VARIANTS",
    "FULL_METHODS",
    "FusionModel",
    "from_preset",
    "make_loader",
    "method_config",
    "train_step",
]

#: Every key a method config may set, with its default. ``modalities`` (the
#: task's order when ``None``) is also the sequential batch order, and ties in
#: the filter go to the one listed last.
METHOD_DEFAULTS: dict[str, Any] = {
    "remix": False,  # False: joint training on shuffled multimodal batches
    "scoring": "pass",  # "pass": scoring_pass before each remix epoch; "online"
    "skip_encoder": False,  # unimodal batches: do not run the masked encoder
    "masked_encoder_eval": False,  # run the masked encoder in eval mode (frozen BatchNorm)
    "order": "sequential",  # ReassemblingBatchSampler order
    "modalities": None,  # None: the task's order (weak first, like the reference's video)
    "joint_head_weight": 0.5,  # weight of each unimodal head on joint rows
    "remix_head_weight": 1.0,  # gamma: weight of the active head on unimodal rows
    "scoring_batch_size": 256,
    "scoring_fraction": 1.0,
    "filter": {},  # extra HardSampleFilter keyword arguments (score, smoothing, ...)
    "sampler": {},  # extra ReassemblingBatchSampler keyword arguments (joint_fraction, ...)
    "alone": None,  # "strong" / "weak": train that modality's encoder + head alone
    "probe_heads": False,  # unimodal heads on detached features (probes; no gradient to encoders)
    "lr_scale": 1.0,  # the method's learning rate is the job's times this
    # A model-side balancing method (benchmarks.balancing): {"kind": "ogm-ge" | "pmr",
    # hyper-parameters}; it acts on joint batches only (benchmarks.balancing.joint_batch).
    "balancer": None,
}

_SCORINGS = ("pass", "online")
_MASKINGS = {"features": False, "drop": True}
_ROLES = ("strong", "weak")


def from_preset(preset: Preset, **overrides: Any) -> dict[str, Any]:
    """The method config of a :class:`~remix_data.presets.Preset` (partial; see
    :func:`method_config`): the filter and sampler arguments, scoring, order, and
    ``skip_encoder`` from ``masking``. The job's ``warmup`` applies (the presets'
    1/6 of the run is the job's default 5 of 30 epochs)."""
    if preset.masking not in _MASKINGS:
        raise ValueError(
            f"masking should be one of {tuple(_MASKINGS)} in the benchmarks, "
            f"but got masking={preset.masking!r} in preset {preset.name!r}"
        )
    sampler = dict(preset.sampler)
    order = sampler.pop("order", METHOD_DEFAULTS["order"])
    cfg = {
        "remix": True,
        "scoring": preset.scoring,
        "skip_encoder": _MASKINGS[preset.masking],
        "order": order,
        "filter": dict(preset.filter),
        "sampler": sampler,
    }
    cfg.update(overrides)
    return cfg


_ONLINE = dataclasses.replace(PAPER, scoring="online")
_SKIP = dataclasses.replace(_ONLINE, masking="drop")

#: Named methods; :func:`method_config` fills in :data:`METHOD_DEFAULTS`.
METHODS: dict[str, dict[str, Any]] = {
    # Ceilings: each modality's encoder and head trained alone, the same budget.
    "alone-strong": {"remix": False, "alone": "strong"},
    "alone-weak": {"remix": False, "alone": "weak"},
    # The classic fused baseline: CE(fused) only; the heads are probes on
    # detached features, so they measure what the encoders learnt.
    "joint-fused": {"remix": False, "probe_heads": True},
    "joint": {"remix": False},
    "remix": from_preset(PAPER),
    "remix-online": from_preset(_ONLINE),
    "remix-skip": from_preset(_SKIP),
    # Diagnostics (not in the default --methods): the masked encoder still runs,
    # but in eval mode, so its BatchNorm running statistics see no masked batch.
    "remix-evalbn": from_preset(PAPER, masked_encoder_eval=True),
    "remix-online-evalbn": from_preset(_ONLINE, masked_encoder_eval=True),
    # The reference code's schedule ratio: Remix at Adam 5e-5 where its baseline
    # uses 1e-3 (1/20 of the job's learning rate).
    "remix-lr20": from_preset(PAPER, lr_scale=1 / 20),
    # Its control: joint training at that learning rate (does the lower rate alone
    # explain what remix-lr20 does?).
    "joint-lr20": {"remix": False, "lr_scale": 1 / 20},
    # Model-side balancing methods on joint's loss (benchmarks.balancing), and with the
    # official scripts' loss, CE(fused) only (the heads are probes, as in joint-fused).
    "ogm-ge": {"remix": False, "balancer": {"kind": "ogm-ge"}},
    "pmr": {"remix": False, "balancer": {"kind": "pmr"}},
    "ogm-ge-fused": {"remix": False, "probe_heads": True, "balancer": {"kind": "ogm-ge"}},
    "pmr-fused": {"remix": False, "probe_heads": True, "balancer": {"kind": "pmr"}},
}

_RECOMMENDED = from_preset(RECOMMENDED)
#: Robust variants, each on top of both online bases: class-aware decoupling,
#: EMA of the scores, a quarter of every subset in joint batches, interleaved
#: batches, and all four together (what :data:`~remix_data.presets.RECOMMENDED`
#: adds to the online recipe).
VARIANTS: dict[str, dict[str, Any]] = {
    "class": {"filter": {"balance": "class"}},
    "ema": {"filter": {"smoothing": 0.5}},
    "joint25": {"sampler": {"joint_fraction": 0.25}},
    "interleave": {"order": "interleave"},
    "all": {key: _RECOMMENDED[key] for key in ("filter", "sampler", "order")},
}
for _base in ("remix-skip", "remix-online-evalbn"):
    for _suffix, _extra in VARIANTS.items():
        METHODS[f"{_base}+{_suffix}"] = {**METHODS[_base], **copy.deepcopy(_extra)}

#: The model-side methods combined with remixing: ``remix-skip`` and ``RECOMMENDED``
#: (``remix-skip+all``), each with ``+ogm-ge`` and ``+pmr``.
BALANCED = ("ogm-ge", "pmr")
for _base in ("remix-skip", "remix-skip+all"):
    for _kind in BALANCED:
        METHODS[f"{_base}+{_kind}"] = {**copy.deepcopy(METHODS[_base]), "balancer": {"kind": _kind}}
#: The methods of the balancing table (``benchmarks/combined.py``): the references, each
#: model-side method alone, the two remix settings, and every combination.
COMBINED_METHODS = (
    "alone-strong", "alone-weak", "joint", "ogm-ge", "pmr", "remix-skip", "remix-skip+all",
    "remix-skip+ogm-ge", "remix-skip+pmr", "remix-skip+all+ogm-ge", "remix-skip+all+pmr",
)  # fmt: skip

#: The methods of the main table (``--methods`` default): the gap references,
#: the paper's recipe, the skip variant and the recommended preset.
MAIN_METHODS = (
    "alone-strong", "alone-weak", "joint-fused", "joint", "remix", "remix-skip", "remix-skip+all",
)  # fmt: skip
#: ``--full`` adds these.
FULL_METHODS = (
    *MAIN_METHODS, "remix-online", "remix-evalbn", "remix-online-evalbn", "remix-lr20",
    "joint-lr20",
)  # fmt: skip


def method_config(
    method: str | Mapping[str, Any], task_modalities: Sequence[str], /, **overrides: Any
) -> dict[str, Any]:
    """Resolve a name of :data:`METHODS` or a partial dict to a full, checked config.

    Args:
        method: a name or a dict of :data:`METHOD_DEFAULTS` keys (``name``
            optional).
        task_modalities: the task's modality names, in the default order (weak
            first, then strong: ``alone`` resolves its role with it).
        **overrides: keys replacing the method's.
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; presets: {sorted(METHODS)}")
        cfg = {"name": method, **copy.deepcopy(METHODS[method])}
    elif isinstance(method, Mapping):
        cfg = dict(copy.deepcopy(dict(method)))
    else:
        raise TypeError(f"method should be a preset name or a dict, but got {method!r}")
    cfg.update(overrides)
    unknown = set(cfg) - set(METHOD_DEFAULTS) - {"name"}
    if unknown:
        raise ValueError(f"method config has unknown keys {sorted(unknown)}")
    full = {"name": cfg.get("name", "custom"), **copy.deepcopy(METHOD_DEFAULTS)}
    full.update(cfg)
    if full["scoring"] not in _SCORINGS:
        raise ValueError(f"scoring should be one of {_SCORINGS}, but got {full['scoring']!r}")
    names = tuple(task_modalities)
    order = names if full["modalities"] is None else tuple(full["modalities"])
    if sorted(order) != sorted(names):
        raise ValueError(f"modalities should order {names}, but got {full['modalities']!r}")
    full["modalities"] = order
    if full["alone"] is not None:
        if full["alone"] not in _ROLES:
            raise ValueError(f"alone should be one of {_ROLES}, but got {full['alone']!r}")
        if full["remix"] or full["probe_heads"]:
            raise ValueError("alone trains one modality: it takes neither remix nor probe_heads")
        full["alone"] = names[0] if full["alone"] == "weak" else names[-1]
    if full["probe_heads"] and full["remix"]:
        raise ValueError("probe_heads is a joint-training baseline: it takes no remix")
    if not float(full["lr_scale"]) > 0:
        raise ValueError(f"lr_scale should be > 0, but got {full['lr_scale']!r}")
    for key, kind in (("filter", "HardSampleFilter"), ("sampler", "ReassemblingBatchSampler")):
        if not isinstance(full[key], Mapping):
            raise TypeError(f"{key} should be a dict of {kind} kwargs: {full[key]!r}")
    full["balancer"] = balancer_config(full["balancer"])
    if full["balancer"] is not None and full["alone"] is not None:
        raise ValueError("alone trains one modality: it takes no balancer")
    return full


class FusionModel(Protocol):
    """What :func:`train_step` needs: per-modality ``encoders`` and ``heads``, a
    ``fuse`` of all features into fused logits, and ``feature_dim``."""

    encoders: nn.ModuleDict
    heads: nn.ModuleDict
    feature_dim: int

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


def _rows_trained(modality: torch.Tensor, count: int) -> tuple[bool, list[bool]]:
    """Whether every row is joint, and per modality whether some row trains it (joint or its id).

    Host ids (the loader's column) are read once in numpy; device ids with torch ops.
    """
    if modality.device.type == "cpu":
        seen = np.bincount(modality.numpy().reshape(-1) - PAD, minlength=count - PAD)
        joint = bool(seen[ALL - PAD])
        return int(seen[ALL - PAD]) == modality.numel(), [joint or bool(c) for c in seen[-PAD:]]
    joint_rows = modality == ALL
    return bool(joint_rows.all()), [
        bool((joint_rows | (modality == i)).any()) for i in range(count)
    ]


def train_step(
    model: FusionModel,
    cfg: Mapping[str, Any],
    sample: Mapping[str, torch.Tensor],
    modality: torch.Tensor,
    *,
    balancer: Balancer | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (:func:`~remix_data.remix_loss`) and the unimodal logits
    computed on it, for ``filter.update(index, logits, modality=modality)``.

    ``sample`` lives on the model's device, ``modality`` where the loader put it
    (the CPU): the choice of encoders, :func:`~remix_data.mask_features` and
    :func:`~remix_data.remix_loss` read it there without a device sync, as the
    README's loop passes it (one id known on the host: no masking operation for
    the active modality, and the loss takes a cached weight column). Joint,
    unimodal and mixed batches share this path. An encoder no row needs
    (every row trains another modality) is skipped with ``skip_encoder`` (its
    features are zeros), run in eval mode with ``masked_encoder_eval``, or run
    as usual; :func:`~remix_data.mask_features` then zeroes the features of
    inactive modalities row by row. The head of a modality no row trains is not
    run: it enters the loss as constant logits with weight 0, so its
    parameters receive no gradient (and no optimiser update) on that batch.

    ``balancer`` (:mod:`benchmarks.balancing`), when given and active this
    epoch, sees the features of a joint batch (:func:`~benchmarks.balancing.joint_batch`;
    its ``PAD`` rows left out) and may add a term to the loss; it never sees
    a unimodal or mixed batch.
    """
    names: tuple[str, ...] = cfg["modalities"]
    y = sample["label"]
    alone = cfg["alone"]
    if alone is not None:  # one encoder and its head; the others never run
        logits = {alone: model.heads[alone](model.encoders[alone](sample[alone]))}
        return F.cross_entropy(logits[alone], y), logits
    all_joint, trained = _rows_trained(modality, len(names))
    used = {m: all_joint or trained[i] for i, m in enumerate(names)}
    feats: dict[str, torch.Tensor] = {}
    for m in names:
        if not used[m] and cfg["skip_encoder"]:
            feats[m] = torch.zeros(y.shape[0], model.feature_dim, device=y.device)  # skipped
        elif not used[m] and cfg["masked_encoder_eval"]:
            encoder = model.encoders[m]
            encoder.eval()  # its BatchNorm neither uses nor updates batch statistics
            feats[m] = encoder(sample[m])
            encoder.train()
        else:
            feats[m] = model.encoders[m](sample[m])
    if not all_joint:
        feats = mask_features(feats, modality, names)
    fused = model.fuse(feats)
    probe = bool(cfg["probe_heads"])
    logits = {m: model.heads[m](feats[m].detach() if probe else feats[m]) for m in names if used[m]}
    constant = torch.zeros_like(fused.detach())
    loss = remix_loss(
        fused, {m: logits.get(m, constant) for m in names}, y, modality, names,
        joint_weight=float(cfg["joint_head_weight"]), gamma=float(cfg["remix_head_weight"]),
    )  # fmt: skip
    if balancer is not None and balancer.active and joint_batch(modality):
        real = (modality != PAD).to(y.device, non_blocking=True)
        term = balancer.on_forward(model, {m: feats[m][real] for m in names}, y[real])  # type: ignore[arg-type]
        if term is not None:
            loss = loss + term
    return loss, logits


def make_loader(
    cfg: Mapping[str, Any],
    dataset: ModalityDecoupler,
    labels: Any,
    batch_size: int,
    warmup: int,
    seed: int,
) -> tuple[HardSampleFilter | None, ReassemblingBatchSampler | None, DataLoader[Any]]:
    """The training loader of a method: remix parts, or a plain shuffled loader for joint."""
    if not cfg["remix"]:
        gen = torch.Generator()
        gen.manual_seed(seed)
        return None, None, DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)
    filt = HardSampleFilter(len(dataset), cfg["modalities"], labels=labels, **dict(cfg["filter"]))
    sampler = ReassemblingBatchSampler(
        filt, batch_size, warmup_epochs=warmup, order=cfg["order"], seed=seed,
        **dict(cfg["sampler"]),
    )  # fmt: skip
    return filt, sampler, DataLoader(dataset, batch_sampler=sampler)
