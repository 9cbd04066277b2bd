"""Glue for training frameworks; each submodule imports its framework on first use.

- :mod:`remix_data.integrations.lightning` —
  :class:`~remix_data.integrations.lightning.RemixCallback` for a Lightning ``Trainer``
  (needs ``lightning``);
- :mod:`remix_data.integrations.accelerate` —
  :func:`~remix_data.integrations.accelerate.prepare_loader`, the supported way to
  hand a remix loader to Hugging Face Accelerate (needs ``accelerate``).

``import remix_data`` (and this package) never imports either framework.
"""

__all__: list[str] = []
