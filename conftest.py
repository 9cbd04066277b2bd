"""Doctest collection on a base install: modules whose optional extra is missing are skipped.

``pytest --doctest-modules remix_data`` imports every module; an integration whose
framework is not installed cannot be imported, so it is left out of collection
instead of failing it.
"""

from __future__ import annotations

import importlib.util

# Module path (relative to the repository) -> the package its import needs.
_OPTIONAL = {
    "remix_data/integrations/lightning.py": "lightning",
    "remix_data/integrations/accelerate.py": "accelerate",
    "remix_data/integrations/nodes.py": "torchdata",
    "remix_data/integrations/transformers.py": "transformers",
    "remix_data/plotting.py": "matplotlib",
    "remix_data/strategies.py": "hypothesis",  # the test extra
}

collect_ignore = [
    path for path, package in _OPTIONAL.items() if importlib.util.find_spec(package) is None
]
