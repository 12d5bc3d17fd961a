"""Every Python sample in the docs runs, against the test database.

A ```python block is preceded by one marker comment (invisible when rendered):

    <!-- runnable -->        executed; the blocks of one file share a module, in order;
                             top-level `await` runs the block in an event loop
    <!-- settings -->        a settings.py excerpt: executed into a settings namespace;
                             its DJAP dict must pass djap's system check
    <!-- not-runnable: why --> shown only; the reason is required

Every Python block of README.md and docs/*.md must be marked (an unmarked one fails).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
import types
from pathlib import Path

import pytest
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Docs that must exist (the guide's pages).
MARKED = {
    "README.md",
    "getting-started.md",
    "jobs.md",
    "workers.md",
    "tasks.md",
    "admin.md",
    "operations.md",
    "comparison.md",
}

BLOCK = re.compile(r"```python[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*(runnable|settings|not-runnable)\s*(?::\s*(.*?))?\s*-->\s*$")


def blocks(path: Path) -> list[tuple[int, str | None, str, str]]:
    """(line, marker, reason, code) for each ```python block of a Markdown file."""
    text = path.read_text()
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = MARKER.search(before[-1]) if before else None
        line = text.count("\n", 0, match.start()) + 1
        found.append(
            (
                line,
                marker.group(1) if marker else None,
                (marker.group(2) or "") if marker else "",
                match.group(1),
            )
        )
    return found


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_the_docs_this_suite_owns_exist():
    missing = sorted(name for name in MARKED if not (DOCS / name).exists())
    assert not missing, f"missing docs: {missing}"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_every_python_block_is_marked(path: Path):
    for line, marker, reason, _ in blocks(path):
        assert marker, f"{path.name}:{line}: mark the block runnable, settings or not-runnable"
        if marker == "not-runnable":
            assert reason, f"{path.name}:{line}: say why the block is not runnable"


def _tasks_api_alias() -> None:
    """Docs import `django.tasks` (Django 6); on Django 5.2 that is the backport's module."""
    try:
        import django.tasks  # noqa: F401
    except ImportError:
        import django_tasks
        import django_tasks.base

        sys.modules.setdefault("django.tasks", django_tasks)
        sys.modules.setdefault("django.tasks.base", django_tasks.base)


def run_block(module: types.ModuleType, code: str, where: str) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, module.__dict__)  # noqa: S307 - our own docs
    if inspect.iscoroutine(result):
        asyncio.run(result)


def check_settings(code: str, where: str) -> None:
    namespace: dict = {
        "INSTALLED_APPS": [],
        "MIDDLEWARE": [],
        "DATABASES": {"default": {}},
        "BASE_DIR": Path("/srv/app"),
        "__name__": "settings_excerpt",
    }
    exec(compile(code, where, "exec"), namespace)  # noqa: S102 - our own docs
    if "DJAP" in namespace:
        from djap_django.checks import check_djap_settings

        with override_settings(DJAP=namespace["DJAP"]):
            problems = [e for e in check_djap_settings() if e.id != "djap.E004"]
        assert not problems, f"{where}: {problems}"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_doc_samples_run(path: Path):
    samples = [b for b in blocks(path) if b[1] in ("runnable", "settings")]
    if not samples:
        pytest.skip("no runnable samples")
    _tasks_api_alias()
    name = "docs_" + re.sub(r"\W", "_", path.stem)
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        for line, marker, _, code in samples:
            where = f"{path.relative_to(ROOT)}:{line}"
            if marker == "settings":
                check_settings(code, where)
            else:
                run_block(module, code, where)
    finally:
        sys.modules.pop(name, None)
        # Each doc is its own little project: forget its job classes, so two docs may
        # both show a `ResizeImage` without tripping the duplicate-name check.
        from djap_django import registry

        for job_name, cls in list(registry._jobs.items()):
            if cls.__module__ == name:
                del registry._jobs[job_name]
