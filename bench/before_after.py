"""What the before/after benchmarks share: a demo run to work on, a child process per
measurement with the code under test first on sys.path, and the alternating loop."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Callable

from git_worktree import worktree

REPO = pathlib.Path(__file__).resolve().parents[1]


def ensure_demo_run(root: pathlib.Path, marker: str) -> None:
    """Run configs/demo.yaml into ``root`` unless ``root / marker`` is there already."""
    if (root / marker).is_dir():
        return
    print(f"no demo run under {root}: running configs/demo.yaml first", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", "configs/demo.yaml",
         "--set", f"runner.pipeline_root={root}"],
        cwd=REPO, check=True,
    )  # fmt: skip


def run_child(child: str, code: pathlib.Path, *args: str, what: str) -> dict:
    """``child`` (Python source) run with ``code`` as working directory; the JSON it
    prints on its last line. ``what`` names the measurement in the error."""
    done = subprocess.run(
        [sys.executable, "-c", child, str(code), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=code,
    )
    if done.returncode != 0:
        raise SystemExit(f"{what} with {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(
    before_ref: str,
    repeats: int,
    measure: Callable[[str, pathlib.Path, pathlib.Path], dict],
    prefix: str,
) -> dict[str, list[dict]]:
    """``measure(name, code, out)`` for the code at ``before_ref`` and the working tree,
    alternating, ``repeats`` times each; ``out`` is a fresh folder per measurement."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        with worktree(REPO, before_ref) as before:
            for i in range(repeats):
                for name, code in (("before", before), ("after", REPO)):
                    runs[name].append(measure(name, code, pathlib.Path(tmp) / f"{name}-{i}"))
    return runs
