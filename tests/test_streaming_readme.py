"""The README's "Streaming data" example runs verbatim and prints each epoch's batches."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("webdataset")

ROOT = Path(__file__).resolve().parents[1]


def test_streaming_readme_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Streaming data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0 {'all': 10}"  # warm-up: 40 joint samples in batches of 4
    assert [line.split()[0] for line in lines] == ["0", "1", "2"]
    assert all("'audio'" in line and "'video'" in line for line in lines[1:])
