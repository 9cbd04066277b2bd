"""Model-side balancing methods of the jobs, OGM-GE and PMR, and their rule with remixing.

Both re-implement the rules of the official training scripts (not their code):

- **OGM-GE** (Peng et al., CVPR 2022; ``GeWu-Lab/OGM-GE_CVPR2022``, ``main.py``):
  per batch, each modality's score is the sum over the batch of the softmax
  probability of the true class under *its share of the fused linear head*
  (``W_m f_m + b / M``, :func:`fused_shares`); ``rho = s_a / s_b``. The
  dominant modality's encoder gradients are scaled by ``1 - tanh(alpha * rho)``
  (:func:`ogm_coefficients`), then every modulated gradient of both encoders
  gets Gaussian noise whose std is the gradient's own (before scaling):
  :func:`modulate_gradients`. Only inside the window of epochs
  ``[start, end]`` (both included).
- **PMR** (Fan et al., CVPR 2023; ``fanyunfeng-bit/Modal-Imbalance-PMR``,
  ``main_Prototype_grad.py``): per-class prototypes of each encoder's features
  (:func:`class_prototypes`), computed in eval mode before training and after
  every epoch from a random tenth of the training batches, blended with the
  previous ones by ``momentum`` (:func:`momentum_update`); per batch the
  prototype probabilities ``softmax(-||f - c_k||)`` (:func:`prototype_logits`)
  give ``rho``, and the prototype cross-entropy of the *weaker* modality only
  is added to the loss with weight ``alpha`` (:func:`pmr_weights`: the hard
  switch of the official script).

Defaults (:data:`OGM_GE_DEFAULTS`, :data:`PMR_DEFAULTS`) are the official
scripts' and the choices where sources disagree are listed in
``docs/balancing.md``. Windows are fractions of the run (the official 0-50 of
100 epochs is ``(0, 0.5)``), resolved by :func:`window_epochs`.

**Combination with remixing** (:func:`joint_batch`): a balancer acts on *joint*
batches only (every row not :data:`~remix_data.vocabulary.PAD` is
:data:`~remix_data.ALL`: the warm-up epochs and the ``joint_fraction``
batches). On a unimodal batch one branch is masked, so both signals are
degenerate (a masked modality's fused share is its bias alone, its features
are zeros at the same distance from every prototype), and remixing's own rule
already decides which modality those rows train.

Example:
    >>> import torch
    >>> c = ogm_coefficients({"acc": 30.0, "gyro": 15.0}, alpha=0.1)
    >>> round(c["acc"], 4), c["gyro"]  # rho = 2: 1 - tanh(0.2)
    (0.8026, 1.0)
    >>> pmr_weights({"acc": 30.0, "gyro": 15.0}, alpha=1.0)  # gyro is weaker
    {'acc': 0.0, 'gyro': 1.0}
    >>> joint_batch(torch.tensor([-1, -1, -2])), joint_batch(torch.tensor([-1, 0]))
    (True, False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from remix_data import ALL
from remix_data.vocabulary import PAD

__all__ = [
    "KINDS",
    "OGM_GE_DEFAULTS",
    "PMR_DEFAULTS",
    "Balancer",
    "OGMGE",
    "PMR",
    "balancer_config",
    "class_prototypes",
    "fused_shares",
    "joint_batch",
    "make_balancer",
    "modulate_gradients",
    "modulated_parameters",
    "momentum_update",
    "ogm_coefficients",
    "pmr_weights",
    "prototype_logits",
    "true_class_score",
    "window_epochs",
]

#: OGM-GE's official defaults: ``--alpha 0.1`` (the README's default setting),
#: ``--modulation_starts 0 --modulation_ends 50`` of ``--epochs 100``.
OGM_GE_DEFAULTS: dict[str, Any] = {"alpha": 0.1, "window": (0.0, 0.5), "noise": True}
#: PMR's official defaults: ``--alpha 1.0``, ``--momentum_coef 0.2``, a tenth of
#: the training batches, ``--modulation_starts 0 --modulation_ends 100`` of
#: ``--epochs 150``.
PMR_DEFAULTS: dict[str, Any] = {
    "alpha": 1.0,
    "momentum": 0.2,
    "fraction": 0.1,
    "window": (0.0, 2 / 3),
}
KINDS: dict[str, dict[str, Any]] = {"ogm-ge": OGM_GE_DEFAULTS, "pmr": PMR_DEFAULTS}
_NOISE_FLOOR = 1e-8  # added to the noise std, as the official code does


# --------------------------------------------------------------------------- #
# Configuration                                                                #
# --------------------------------------------------------------------------- #


def balancer_config(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A checked balancer config: ``{"kind": "ogm-ge" | "pmr", **hyper-parameters}``,
    the kind's defaults filled in (``None`` stays ``None``).

    Example:
        >>> balancer_config({"kind": "pmr", "alpha": 2.0})["momentum"]
        0.2
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise TypeError(f"balancer should be a dict with a 'kind', but got balancer={spec!r}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"balancer kind should be one of {tuple(KINDS)}, but got kind={kind!r}")
    unknown = set(spec) - set(KINDS[kind]) - {"kind"}
    if unknown:
        raise ValueError(f"balancer {kind!r} has unknown keys {sorted(unknown)}")
    cfg: dict[str, Any] = {"kind": kind, **KINDS[kind], **spec}
    alpha = cfg["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha should be a number > 0, but got alpha={alpha!r}")
    window = cfg["window"]
    if (
        not isinstance(window, Sequence)
        or len(window) != 2
        or not all(isinstance(w, (int, float)) for w in window)
        or not 0.0 <= window[0] <= window[1] <= 1.0
    ):
        raise ValueError(
            f"window should be (start, end) fractions of the run, 0 <= start <= end <= 1, "
            f"but got window={window!r}"
        )
    cfg["window"] = (float(window[0]), float(window[1]))
    if kind == "pmr":
        if not 0.0 <= cfg["momentum"] < 1.0:
            raise ValueError(f"momentum should be in [0, 1), but got momentum={cfg['momentum']!r}")
        if not 0.0 < cfg["fraction"] <= 1.0:
            raise ValueError(f"fraction should be in (0, 1], but got fraction={cfg['fraction']!r}")
    elif not isinstance(cfg["noise"], bool):
        raise TypeError(f"noise should be a bool, but got noise={cfg['noise']!r}")
    return cfg


def window_epochs(window: tuple[float, float], epochs: int) -> tuple[int, int]:
    """The window's first and last epoch (both included) in a run of ``epochs``.

    Example:
        >>> window_epochs((0.0, 0.5), 100), window_epochs((0.0, 0.5), 30)
        ((0, 50), (0, 15))
    """
    return round(window[0] * epochs), round(window[1] * epochs)


def joint_batch(modality: torch.Tensor) -> bool:
    """Whether a balancer acts on this batch: at least one row is not a
    :data:`~remix_data.vocabulary.PAD` repeat, and every such row is joint
    (:data:`~remix_data.ALL`)."""
    real = modality != PAD
    return bool(real.any()) and bool((modality[real] == ALL).all())


# --------------------------------------------------------------------------- #
# OGM-GE: the rule                                                             #
# --------------------------------------------------------------------------- #


def fused_shares(
    fused: nn.Linear, features: Mapping[str, torch.Tensor], order: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Each modality's share of a linear fused head on features concatenated in
    ``order``: ``W[:, slice_m] @ f_m + b / M`` (the official code's ``out_a``,
    ``out_v`` for concat fusion). The shares sum to the fused logits."""
    dims = [int(features[m].shape[1]) for m in order]
    if sum(dims) != fused.in_features:
        raise ValueError(
            f"features of {tuple(order)} have {sum(dims)} columns, the fused head takes "
            f"{fused.in_features}"
        )
    bias = fused.bias / len(order) if fused.bias is not None else 0.0
    out, lo = {}, 0
    for m, d in zip(order, dims):
        out[m] = features[m] @ fused.weight[:, lo : lo + d].T + bias
        lo += d
    return out


def true_class_score(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The sum over rows of the softmax probability of each row's true class."""
    p = torch.softmax(logits.detach().float(), dim=1)
    return float(p.gather(1, target[:, None]).sum())


def ogm_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """OGM's gradient coefficients of two modalities from their scores.

    With ``rho = s_a / s_b``: ``k_a = 1 - tanh(alpha * rho)`` if ``rho > 1``
    (``a`` dominates), ``k_b = 1 - tanh(alpha / rho)`` if ``rho < 1``, and the
    other coefficient 1. At ``rho == 1`` both are 1 (the paper's Eq. 10; the
    official code modulates its second modality there). A zero score makes the
    other modality's ratio infinite (coefficient 0); two zero scores modulate
    nothing.
    """
    if len(scores) != 2:
        raise ValueError(f"OGM-GE balances two modalities, but got scores for {list(scores)}")
    (a, s_a), (b, s_b) = scores.items()
    k = {a: 1.0, b: 1.0}
    if s_a > s_b:
        k[a] = 1.0 - math.tanh(alpha * (s_a / s_b if s_b > 0 else math.inf))
    elif s_b > s_a:
        k[b] = 1.0 - math.tanh(alpha * (s_b / s_a if s_a > 0 else math.inf))
    return k


def modulated_parameters(encoder: nn.Module) -> list[nn.Parameter]:
    """The weights OGM-GE modulates in an encoder: every parameter of two or more
    dimensions (convolution kernels of any dimension and linear weights), never
    biases or normalisation parameters. The official code modulates the 4-D
    (``Conv2d``) weights of its ResNet encoders only; these encoders are 1-D CNNs
    and MLPs, whose kernels are 3-D and 2-D."""
    return [p for p in encoder.parameters() if p.requires_grad and p.dim() >= 2]


def modulate_gradients(
    params: Sequence[torch.Tensor],
    coefficient: float,
    generator: torch.Generator | None,
    *,
    noise: bool = True,
) -> None:
    """In place: ``grad = grad * coefficient + N(0, std(grad) + 1e-8)`` (the noise's
    std is the unscaled gradient's, as in the official code); ``noise=False`` is
    plain OGM. The noise comes from ``generator`` (a CPU generator), never from
    the global RNG. Parameters without a gradient are left alone."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        if noise:
            std = float(g.std()) if g.numel() > 1 else 0.0
            eps = torch.randn(g.shape, generator=generator, dtype=g.dtype)
            p.grad = g * coefficient + eps.to(g.device) * (std + _NOISE_FLOOR)
        elif coefficient != 1.0:
            g.mul_(coefficient)


# --------------------------------------------------------------------------- #
# PMR: the rule                                                                #
# --------------------------------------------------------------------------- #


def class_prototypes(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-class mean of ``features`` (``[N, D]`` -> ``[num_classes, D]``).

    A class absent from ``labels`` keeps its ``previous`` prototype (zeros
    without one); the official code divides by a zero count there (NaN).
    """
    feats = features.detach().float()
    sums = torch.zeros(num_classes, feats.shape[1], dtype=feats.dtype, device=feats.device)
    sums.index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=num_classes).to(feats)
    protos = sums / counts.clamp(min=1)[:, None]
    empty = counts == 0
    if bool(empty.any()):
        protos[empty] = 0.0 if previous is None else previous.to(protos)[empty]
    return protos


def momentum_update(fresh: torch.Tensor, previous: torch.Tensor, momentum: float) -> torch.Tensor:
    """``(1 - momentum) * fresh + momentum * previous``."""
    return (1.0 - momentum) * fresh + momentum * previous


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Negative Euclidean distances of each row to each class prototype: ``[B, C]``."""
    diff = features[:, None, :] - prototypes[None, :, :].to(features)
    return -diff.pow(2).sum(-1).sqrt()


def pmr_weights(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """PMR's hard switch: weight ``alpha`` on the prototype cross-entropy of the
    modality with the *lower* prototype score, 0 on the other; 0 on both at a tie.

    Example:
        >>> pmr_weights({"a": 5.0, "b": 5.0}, alpha=2.0)
        {'a': 0.0, 'b': 0.0}
    """
    if len(scores) != 2:
        raise ValueError(f"PMR balances two modalities, but got scores for {list(scores)}")
    (a, s_a), (b, s_b) = scores.items()
    w = {a: 0.0, b: 0.0}
    if s_a > s_b:
        w[b] = float(alpha)
    elif s_b > s_a:
        w[a] = float(alpha)
    return w


# --------------------------------------------------------------------------- #
# The balancers a job drives                                                   #
# --------------------------------------------------------------------------- #


class Balancer:
    """What a :class:`benchmarks.harness.Job` drives, once per epoch and per batch.

    Per epoch: :meth:`start_epoch` (PMR refreshes its prototypes there),
    :meth:`end_epoch` (the epoch's counters). Per joint batch
    (:func:`joint_batch`): :meth:`on_forward` with the batch's features (real
    rows only) returns an extra loss term or ``None``; after ``backward``,
    :meth:`after_backward` applies what ``on_forward`` prepared (a no-op
    otherwise).

    Args:
        cfg: a :func:`balancer_config`.
        modalities: the model's modality order (two).
        epochs: the run's length (resolves the window).
        seed: seeds the balancer's own generator.
    """

    kind = ""

    def __init__(
        self, cfg: Mapping[str, Any], modalities: Sequence[str], epochs: int, seed: int
    ) -> None:
        if len(modalities) != 2:
            raise ValueError(f"{cfg['kind']} balances two modalities, but got {list(modalities)}")
        self.cfg = dict(cfg)
        self.names = tuple(modalities)
        self.first, self.last = window_epochs(cfg["window"], epochs)
        self.seed = seed
        self.generator = torch.Generator()  # the noise's own stream, apart from the loader's
        self.generator.manual_seed(seed * 1_000_003 + 7)
        self.active = False
        self.counts: dict[str, Any] = {}

    def in_window(self, epoch: int) -> bool:
        """Whether ``epoch`` is inside the modulation window (both ends included)."""
        return self.first <= epoch <= self.last

    def start_epoch(self, epoch: int, model: nn.Module, joint_batches: bool, **data: Any) -> None:
        """Open ``epoch``; ``joint_batches``: whether the epoch has any joint batch."""
        self.active = self.in_window(epoch) and joint_batches
        self.counts = {"batches": 0, "dominant": dict.fromkeys(self.names, 0)}

    def on_forward(
        self, model: nn.Module, features: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor | None:
        raise NotImplementedError

    def after_backward(self, model: nn.Module) -> None:
        """Apply what :meth:`on_forward` prepared for this batch (nothing by default)."""

    def end_epoch(self) -> dict[str, Any]:
        """The epoch's counters: ``active``, ``batches`` acted on, per modality how
        often it was the dominant one, and the kind's own numbers."""
        return {"kind": self.kind, "active": self.active, **self.counts}


class OGMGE(Balancer):
    """OGM-GE (:data:`OGM_GE_DEFAULTS`): modulate the dominant encoder's gradients,
    noise on both encoders' modulated weights, on joint batches inside the window."""

    kind = "ogm-ge"

    def __init__(
        self, cfg: Mapping[str, Any], modalities: Sequence[str], epochs: int, seed: int
    ) -> None:
        super().__init__(cfg, modalities, epochs, seed)
        self._pending: dict[str, float] | None = None
        self._sums: dict[str, float] = {}

    def start_epoch(self, epoch: int, model: nn.Module, joint_batches: bool, **data: Any) -> None:
        super().start_epoch(epoch, model, joint_batches)
        self._sums = dict.fromkeys(self.names, 0.0)
        self._pending = None

    def on_forward(
        self, model: nn.Module, features: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor | None:
        fused = getattr(model, "fused", None)
        if not isinstance(fused, nn.Linear):
            raise TypeError("OGM-GE needs the model's linear fused head as `model.fused`")
        order = tuple(getattr(model, "modalities", self.names))
        with torch.no_grad():
            shares = fused_shares(fused, features, order)
        scores = {m: true_class_score(shares[m], target) for m in self.names}
        self._pending = ogm_coefficients(scores, float(self.cfg["alpha"]))
        return None

    def after_backward(self, model: nn.Module) -> None:
        k, self._pending = self._pending, None
        if k is None:
            return
        encoders = model.encoders
        assert isinstance(encoders, nn.ModuleDict)
        for m in self.names:
            modulate_gradients(
                modulated_parameters(encoders[m]), k[m], self.generator, noise=self.cfg["noise"]
            )
            self._sums[m] += k[m]
            self.counts["dominant"][m] += int(k[m] < 1.0)
        self.counts["batches"] += 1

    def end_epoch(self) -> dict[str, Any]:
        n = self.counts["batches"]
        mean = {m: (s / n if n else None) for m, s in self._sums.items()}
        return {**super().end_epoch(), "mean_coefficient": mean}


class PMR(Balancer):
    """PMR (:data:`PMR_DEFAULTS`): prototype cross-entropy of the weaker modality,
    on joint batches inside the window; prototypes refreshed before every epoch
    that needs them."""

    kind = "pmr"

    def __init__(
        self,
        cfg: Mapping[str, Any],
        modalities: Sequence[str],
        epochs: int,
        seed: int,
        num_classes: int,
    ) -> None:
        super().__init__(cfg, modalities, epochs, seed)
        self.num_classes = num_classes
        self.prototypes: dict[str, torch.Tensor] | None = None
        self.refresh_time = 0.0
        self._rho_sum = 0.0

    def sample_indices(self, n: int, batch_size: int, epoch: int) -> torch.Tensor:
        """The samples of one refresh: the first ``max(1, batches // 10)`` batches of
        a shuffled pass (``fraction`` of them in general), drawn from ``(seed, epoch)``."""
        batches = math.ceil(n / batch_size)
        k = max(1, int(batches * float(self.cfg["fraction"])))
        gen = torch.Generator()
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=gen)[: k * batch_size]

    def compute(
        self,
        model: nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        index: torch.Tensor,
        chunk: int = 512,
    ) -> dict[str, torch.Tensor]:
        """Fresh prototypes from the rows ``index`` (eval mode, no grad)."""
        encoders = model.encoders
        assert isinstance(encoders, nn.ModuleDict)
        was_training = model.training
        model.eval()
        feats: dict[str, list[torch.Tensor]] = {m: [] for m in self.names}
        with torch.no_grad():
            for lo in range(0, index.numel(), chunk):
                rows = index[lo : lo + chunk]
                for m in self.names:
                    feats[m].append(encoders[m](inputs[m][rows]))
        model.train(was_training)
        y = labels[index]
        previous = self.prototypes or {}
        return {
            m: class_prototypes(torch.cat(f), y, self.num_classes, previous.get(m))
            for m, f in feats.items()
        }

    def start_epoch(self, epoch: int, model: nn.Module, joint_batches: bool, **data: Any) -> None:
        """Refresh the prototypes when the epoch will use them. The official
        script computes them before epoch 0 and after every epoch, blending from
        the prototypes of epoch 2 on (its ``epoch <= 0`` test sees the epoch just
        trained); ``data`` holds ``inputs``, ``labels`` and ``batch_size``."""
        super().start_epoch(epoch, model, joint_batches)
        self._rho_sum = 0.0
        self.counts["refreshed"] = False
        if not self.active:
            return
        t0 = time.perf_counter()
        inputs, labels = data["inputs"], data["labels"]
        index = self.sample_indices(int(labels.shape[0]), int(data["batch_size"]), epoch)
        fresh = self.compute(model, inputs, labels, index)
        if self.prototypes is None or epoch < 2:
            self.prototypes = fresh
        else:
            momentum = float(self.cfg["momentum"])
            self.prototypes = {
                m: momentum_update(fresh[m], self.prototypes[m], momentum) for m in self.names
            }
        self.counts["refreshed"] = True
        self.refresh_time += time.perf_counter() - t0

    def on_forward(
        self, model: nn.Module, features: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor | None:
        assert self.prototypes is not None, "start_epoch refreshes the prototypes first"
        logits = {m: prototype_logits(features[m], self.prototypes[m]) for m in self.names}
        scores = {m: true_class_score(logits[m], target) for m in self.names}
        weights = pmr_weights(scores, float(self.cfg["alpha"]))
        a, b = self.names
        self._rho_sum += scores[a] / scores[b] if scores[b] > 0 else math.inf
        self.counts["batches"] += 1
        term: torch.Tensor | None = None
        for m, w in weights.items():
            if w > 0:
                self.counts["dominant"][self.names[1 - self.names.index(m)]] += 1
                ce = w * F.cross_entropy(logits[m], target)
                term = ce if term is None else term + ce
        return term

    def end_epoch(self) -> dict[str, Any]:
        n = self.counts["batches"]
        a, b = self.names
        return {**super().end_epoch(), f"mean_rho_{a}_over_{b}": self._rho_sum / n if n else None}


def make_balancer(
    cfg: Mapping[str, Any] | None,
    modalities: Sequence[str],
    *,
    epochs: int,
    seed: int,
    num_classes: int,
) -> Balancer | None:
    """The balancer of a resolved config (``None`` for none)."""
    if cfg is None:
        return None
    if cfg["kind"] == "ogm-ge":
        return OGMGE(cfg, modalities, epochs, seed)
    return PMR(cfg, modalities, epochs, seed, num_classes)
