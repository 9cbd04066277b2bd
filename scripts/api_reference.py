"""Build the API reference from the docstrings with pdoc; any pdoc warning fails the build.

    python scripts/api_reference.py [OUTPUT]     # default: build/api (git-ignored)

Every public module of ``remix_data`` is documented (a module whose name or
package starts with ``_`` is not), integrations included, so the environment
needs the optional frameworks (``bash scripts/run.sh scripts/api_reference.py``
has them). Open ``OUTPUT/index.html``. ``.ci/run`` runs this script.
"""

from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc

import remix_data

ROOT = Path(__file__).resolve().parents[1]


def public_modules() -> list[str]:
    """``remix_data`` and its submodules, private ones left out, in name order."""
    found = pkgutil.walk_packages(remix_data.__path__, "remix_data.")
    names = [m.name for m in found if not any(p.startswith("_") for p in m.name.split("."))]
    return ["remix_data", *sorted(names)]


def build(output: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"pdoc(\..*)?$")
        # hypothesis's @composite re-annotates the strategies of remix_data.strategies
        # with a string that only resolves in remix_data.strategies, not in
        # hypothesis.strategies, where pdoc evaluates it; the page shows it verbatim.
        warnings.filterwarnings(
            "ignore",
            message=r"Error parsing type annotation hypothesis\.strategies\.SearchStrategy"
            r"\[ForwardRef\('dict\[str, Any\]'\)\] for remix_data\.strategies\.",
        )
        # remix_data.testing re-exports the strategies of remix_data.strategies through a
        # module __getattr__ (hypothesis is imported on first use); pdoc reads the module's
        # namespace only, so it cannot resolve them there: they are documented where they live.
        warnings.filterwarnings(
            "ignore",
            message=r"Found '(logits|score_tables|sampler_configs)' in "
            r"remix_data\.testing\.__all__",
        )
        pdoc.render.configure(docformat="google", show_source=False)
        pdoc.pdoc(*public_modules(), output_directory=output)
    pages = sorted(output.rglob("*.html"))
    print(f"API reference: {len(pages)} pages in {output}")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "api")
