"""The layering contract of DESIGN.md ("Layering"), checked on the source text.

Every ``import`` and ``from ... import`` in ``model_maker/``, ``components/``,
``pipeline/`` and ``dashboard/`` is read from the syntax tree, at module level
and inside functions alike (a function-level import is a dependency too; it
must not hide a cycle). Nothing is imported, so this runs in well under a
second; ``make lint`` runs it as a script (``python tests/test_layering.py``),
pytest as tests.

The layers, bottom to top::

    model_maker.core                      shared pieces; imports no task package
    model_maker.<task>                    object_detector, image_classifier: core + itself
    model_maker.tasks                     the task switch of the components: both tasks
    components                            model_maker; never pipeline or dashboard
    pipeline (config, runners, ...)       model_maker, components
    dashboard                             reads runs; never the CLI that launches it
    pipeline.commands                     one module per subcommand; never pipeline.cli
    pipeline.cli                          the entry point; imports the commands

A function-level import is kept only to defer a heavy dependency (TensorFlow,
TFX, Beam, ML Metadata, Flask, ...), and says so in a comment on its line or on
the line before it (or before the block of import lines it belongs to), e.g.
``# deferred: TensorFlow is heavy``.
"""

from __future__ import annotations

import ast
import functools
import pathlib
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("model_maker", "components", "pipeline", "dashboard")
TASK_PACKAGES = ("model_maker.object_detector", "model_maker.image_classifier")
TASK_SWITCH = "model_maker.tasks"
UPPER_LAYERS = ("components", "pipeline", "dashboard")
CLI = ("pipeline.cli", "pipeline.commands")

# Rule (f) holds in every package (a function-level import without a reason fails).
DEFERRAL_REASON_ENFORCED = tuple(f"{package}/" for package in PACKAGES)

# Tool directives in a comment, which are no reason: what is left after them must say why.
_DIRECTIVE = re.compile(
    r"noqa(:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[^\]]*\])?"
    r"|pragma:[^#]*|(fmt|pylint|isort):\s*[\w-]+(=[\w,-]+)?"
)


@dataclass(frozen=True)
class Import:
    """One imported name: ``from a.b import c`` gives the target ``a.b.c``."""

    path: str  # relative to the repository, with forward slashes
    line: int
    importer: str  # dotted module name of the importing file
    target: str
    function_level: bool

    def __str__(self) -> str:
        where = "inside a function" if self.function_level else "at module level"
        return f"{self.path}:{self.line}: {self.importer} imports {self.target} ({where})"


@dataclass(frozen=True)
class Rule:
    """Modules under ``sources`` (minus ``exempt``) import nothing under ``forbidden``."""

    name: str
    says: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()


RULES = (
    Rule(
        "a-core-imports-no-task-package",
        "model_maker.core imports no task package and no upper layer",
        sources=("model_maker.core",),
        forbidden=(*TASK_PACKAGES, TASK_SWITCH, *UPPER_LAYERS),
    ),
    *(
        Rule(
            f"b-{task.rsplit('.', 1)[1]}-imports-only-core-and-itself",
            f"{task} imports only model_maker.core and itself",
            sources=(task,),
            forbidden=(*(t for t in TASK_PACKAGES if t != task), TASK_SWITCH, *UPPER_LAYERS),
        )
        for task in TASK_PACKAGES
    ),
    Rule(
        "c-components-import-neither-pipeline-nor-dashboard",
        "components import neither pipeline nor dashboard",
        sources=("components",),
        forbidden=("pipeline", "dashboard"),
    ),
    Rule(
        "d-dashboard-does-not-import-the-cli",
        "dashboard imports neither pipeline.cli nor pipeline.commands (the CLI launches it)",
        sources=("dashboard",),
        forbidden=CLI,
    ),
    Rule(
        "e-commands-do-not-import-the-cli",
        "no module in pipeline.commands imports pipeline.cli",
        sources=("pipeline.commands",),
        forbidden=("pipeline.cli",),
    ),
    Rule(
        "g-pipeline-library-does-not-import-the-cli",
        "pipeline's library modules (config, runners, ...) import neither pipeline.cli "
        "nor pipeline.commands",
        sources=("pipeline",),
        exempt=CLI,
        forbidden=CLI,
    ),
)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(path: pathlib.Path, root: pathlib.Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: pathlib.Path = REPO) -> list[pathlib.Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, with whether it sits inside a function (or method) body."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        yield node, in_function
        nested = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        stack.extend((child, nested) for child in ast.iter_child_nodes(node))


@functools.cache
def imports_of(
    path: pathlib.Path, root: pathlib.Path = REPO
) -> tuple[tuple[ast.stmt, bool, tuple[str, ...]], ...]:
    """(statement, function_level, dotted targets) for every import statement in the file."""
    importer = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node, function_level in _walk(tree):
        if isinstance(node, ast.Import):
            found.append((node, function_level, tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, is_package, node.module, node.level)
            targets = tuple(f"{base}.{alias.name}".strip(".") for alias in node.names)
            found.append((node, function_level, targets))
    return tuple(sorted(found, key=lambda item: item[0].lineno))


def project_imports(root: pathlib.Path = REPO) -> list[Import]:
    found = []
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        importer = module_name(path, root)
        for node, function_level, targets in imports_of(path, root):
            for target in targets:
                if _under(target, PACKAGES):
                    found.append(Import(rel, node.lineno, importer, target, function_level))
    return found


def violations(rule: Rule, imports: list[Import]) -> list[Import]:
    return [
        imp
        for imp in imports
        if _under(imp.importer, rule.sources)
        and not _under(imp.importer, rule.exempt)
        and _under(imp.target, rule.forbidden)
    ]


def _is_reason(comment: str) -> bool:
    return bool(_DIRECTIVE.sub("", comment).strip(" \t#-:;,"))


def _comment_of(line: str) -> str | None:
    """The comment of a source line (naive about '#' in strings, enough for import lines)."""
    index = line.find("#")
    return line[index:] if index >= 0 else None


def undeferred_imports(root: pathlib.Path = REPO) -> list[str]:
    """Function-level imports with no reason on their line, the line before, or above the
    block of import lines they belong to (its import groups may be split by blank lines)."""
    found = []
    for path in source_files(root):
        lines = path.read_text(encoding="utf-8").splitlines()
        import_lines = set()
        statements = []
        for node, function_level, targets in imports_of(path, root):
            import_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            if function_level:
                statements.append((node, targets))
        for node, targets in statements:
            own = [_comment_of(lines[i - 1]) for i in range(node.lineno, node.end_lineno + 1)]
            if any(c and _is_reason(c) for c in own):
                continue
            above = node.lineno - 1
            # Up through the import block, across the blank lines between its import groups.
            while above in import_lines or (
                not lines[above - 1].strip() and above - 1 in import_lines
            ):
                above -= 1
            previous = lines[above - 1].strip() if above >= 1 else ""
            if previous.startswith("#") and _is_reason(previous):
                continue
            rel = path.relative_to(root).as_posix()
            found.append(f"{rel}:{node.lineno}: import of {', '.join(targets)} gives no reason")
    return found


def _split_deferrals(found: list[str]) -> tuple[list[str], list[str]]:
    enforced = [v for v in found if v.startswith(DEFERRAL_REASON_ENFORCED)]
    return enforced, [v for v in found if v not in enforced]


# --- tests --------------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return project_imports()


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_layering(rule: Rule, imports: list[Import]) -> None:
    broken = violations(rule, imports)
    assert not broken, f"{rule.says}:\n" + "\n".join(map(str, broken))


def test_function_level_imports_say_why_they_are_deferred() -> None:
    enforced, pending = _split_deferrals(undeferred_imports())
    if pending:
        warnings.warn(
            f"{len(pending)} function-level imports outside {DEFERRAL_REASON_ENFORCED} give no "
            "reason (not yet enforced):\n" + "\n".join(pending),
            stacklevel=1,
        )
    assert not enforced, "function-level imports must defer a heavy import and say so:\n" + (
        "\n".join(enforced)
    )


def test_the_checker_sees_every_kind_of_import(tmp_path: pathlib.Path) -> None:
    """The contract cannot pass by looking at nothing: module, function, method, relative."""
    core = tmp_path / "model_maker" / "core"
    core.mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "bad.py").write_text(
        "import os\n"
        "from . import sibling\n"
        "from ..object_detector import model\n"
        "def f():\n"
        "    # deferred: TensorFlow is heavy\n"
        "    import tensorflow\n"
        "\n"
        "    from model_maker.core import errors\n"
        "    x = 1\n"
        "    from pipeline import cli  # noqa: F401\n"
        "class C:\n"
        "    def m(self):\n"
        "        import model_maker.object_detector.spec\n"
    )
    for pkg in PACKAGES[1:]:
        (tmp_path / pkg).mkdir()
    found = project_imports(tmp_path)
    assert [(i.line, i.target, i.function_level) for i in found] == [
        (2, "model_maker.core.sibling", False),
        (3, "model_maker.object_detector.model", False),
        (8, "model_maker.core.errors", True),
        (10, "pipeline.cli", True),
        (13, "model_maker.object_detector.spec", True),
    ]
    assert [i.line for i in violations(RULES[0], found)] == [3, 10, 13]
    assert undeferred_imports(tmp_path) == [
        "model_maker/core/bad.py:10: import of pipeline.cli gives no reason",
        "model_maker/core/bad.py:13: import of model_maker.object_detector.spec gives no reason",
    ]


def main() -> int:
    """``make lint``: print every violation; exit 1 on those the tests fail on."""
    imports = project_imports()
    failed = 0
    for rule in RULES:
        for imp in violations(rule, imports):
            print(f"{imp}  [layering {rule.name}]")
            failed += 1
    enforced, pending = _split_deferrals(undeferred_imports())
    for line in enforced:
        print(f"{line}  [layering f-deferred-import-without-reason]")
    failed += len(enforced)
    if pending:
        print(f"note: {len(pending)} function-level imports without a reason, not yet enforced:")
        print("\n".join(f"  {line}" for line in pending))
    print(f"layering: {failed} violation(s)" if failed else "layering: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
