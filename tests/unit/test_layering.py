"""Layering rules (DESIGN §1): the core is framework-free; api/ and operator/ do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {"kopf", "fastapi", "starlette", "aiohttp", "kubernetes", "kubernetes_asyncio", "httpx"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", python_files(ROOT / "kubetask" / "core"), ids=lambda p: p.name)
def test_core_is_framework_free(path: Path) -> None:
    bad = {name for name in imports(path) if name.split(".")[0] in FORBIDDEN_IN_CORE}
    bad |= {name for name in imports(path) if name.startswith(("kubetask.operator", "kubetask.api",
                                                                "kubetask.kube"))}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize(("directory", "other"), [("operator", "kubetask.api"), ("api", "kubetask.operator")])
def test_api_and_operator_are_independent(directory: str, other: str) -> None:
    for path in python_files(ROOT / directory):
        bad = {name for name in imports(path) if name == other or name.startswith(other + ".")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
