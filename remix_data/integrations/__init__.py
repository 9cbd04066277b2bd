"""Glue for training frameworks; each submodule imports its framework on first use.

- :mod:`remix_data.integrations.lightning` —
  :class:`~remix_data.integrations.lightning.RemixCallback` for a Lightning ``Trainer``
  (needs ``lightning``);
- :mod:`remix_data.integrations.accelerate` —
  :func:`~remix_data.integrations.accelerate.prepare_loader`, the supported way to
  hand a remix loader to Hugging Face Accelerate (needs ``accelerate``);
- :mod:`remix_data.integrations.transformers` —
  :class:`~remix_data.integrations.transformers.RemixTrainer`, a Hugging Face
  ``Trainer`` that trains remix epochs and checkpoints the filter (needs
  ``transformers`` and ``accelerate``);
- :mod:`remix_data.integrations.nodes` — ``torchdata.nodes`` graphs (needs
  ``torchdata``).

``import remix_data`` (and this package) never imports any of these frameworks.
"""

__all__: list[str] = []
