"""Check an installed remix-data wheel as a user gets it (run by ``.ci/run``).

Run with the Python of a fresh virtual environment into which only the wheel and
its declared dependencies were installed, from a folder outside the checkout:

    python scripts/check_wheel.py README.md CHANGELOG.md

It checks that ``remix_data`` is imported from that environment (not from a
checkout), that the distribution's version equals ``remix_data.__version__`` and
the newest released entry of the CHANGELOG, that ``py.typed`` is installed, that
the extras are declared, and then runs README.md's quick-start block (read from
the README, so it cannot drift from what users copy) with the installed package.
Standard library only: the environment holds nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

#: Extras the package declares (pyproject.toml ``[project.optional-dependencies]``).
EXTRAS = {"transformers", "ray", "stream", "plot", "test", "dev", "docs"}


def quick_start(readme: Path) -> str:
    """The first ```python block after the README's ``## Quick start`` heading."""
    text = readme.read_text()
    section = text.split("\n## Quick start\n", 1)
    if len(section) != 2:
        raise SystemExit(f"{readme}: no '## Quick start' section")
    block = re.search(r"^```python\n(.*?)^```$", section[1], re.M | re.S)
    if block is None:
        raise SystemExit(f"{readme}: no python block in the quick start")
    return block.group(1)


def released_version(changelog: Path) -> str:
    """The newest ``## [x.y.z]`` entry of a Keep-a-Changelog file (not Unreleased)."""
    found = re.search(r"^## \[(\d+\.\d+\.\d+)\]", changelog.read_text(), re.M)
    if found is None:
        raise SystemExit(f"{changelog}: no released '## [x.y.z]' entry")
    return found.group(1)


def main(readme: Path, changelog: Path) -> None:
    import remix_data

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(remix_data.__file__).resolve().parent
    assert package.parent == site, f"remix_data imported from {package}, not from {site}"
    dist = metadata.distribution("remix-data")
    version = dist.version
    assert version == remix_data.__version__, (version, remix_data.__version__)
    assert version == released_version(changelog), (version, released_version(changelog))
    assert (package / "py.typed").is_file(), "py.typed is not installed"
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert extras >= EXTRAS, f"extras missing: {sorted(EXTRAS - extras)}"
    requires = dist.requires or []
    core = sorted(r for r in requires if "extra ==" not in r)
    print(f"remix-data {version} from {package}; requires {core}; extras {sorted(extras)}")

    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "quick_start.py"
        script.write_text(quick_start(readme))
        done = subprocess.run(
            [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\{'audio': \d+, 'video': \d+\}", last), last
    print(f"README quick start ran against the wheel: {last}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python check_wheel.py README.md CHANGELOG.md")
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
