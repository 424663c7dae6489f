"""The house rules that keep the rooms readable: the core and the stores run without Flask,
modules stay small, functions fit on a screen (or say in their docstring why not)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "agent")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("module", ["app.core", "app.core.engine", "app.storage", "app.ingest"])
def test_core_storage_and_ingest_load_no_flask(module: str) -> None:
    code = f"import sys, {module}, importlib; importlib.import_module('{module}'); "
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_no_module_over_the_limit() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert big == {}


def test_long_functions_say_why() -> None:
    """A function over the limit must give its reason in its docstring ("long because ...")."""
    long = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            n = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            if n > MAX_FUNCTION_LINES and "long because" not in doc.lower():
                long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


@pytest.mark.skipif(shutil.which("duplicates") is None, reason="the duplicates tool is not here")
@pytest.mark.parametrize("package", PACKAGES)
def test_no_code_written_twice(package: str) -> None:
    """The `duplicates` tool finds no pair of places sharing six or more lines of one shape
    (protoc's generated ``*_pb2.py`` modules are alike by construction: not counted)."""
    out = subprocess.run(
        ["duplicates", "--repo", package], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    rows = [r for r in out.splitlines()[1:] if r.startswith("D") and r.count("_pb2.py:") < 2]
    assert out.startswith("no duplicates") or not rows, out
