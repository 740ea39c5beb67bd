"""The code of another git ref beside the working tree, for before/after benchmarks."""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def worktree(repo: pathlib.Path, ref: str) -> Iterator[pathlib.Path]:
    """``ref`` checked out (detached) in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-worktree-") as tmp:
        folder = pathlib.Path(tmp) / "code"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(folder), ref],
            cwd=repo, check=True, capture_output=True,
        )  # fmt: skip
        try:
            yield folder
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(folder)], cwd=repo, check=False
            )


def working_tree_label(repo: pathlib.Path) -> str:
    """``<short HEAD> + working tree``: what the "after" side of a benchmark ran."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    return f"{head} + working tree"
