"""Layering rules (DESIGN §1), checked on the import statements of every module of the package.

* kubetask/core is framework-free (no Kopf, FastAPI, Kubernetes clients, HTTP) and imports
  none of the operator, the API or the client layer;
* api/ and operator/ never import each other;
* kubetask/cluster (the local control plane) imports neither the operator nor the API;
* nothing imports kubetask.sim, the retired simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {"kopf", "fastapi", "starlette", "aiohttp", "kubernetes", "kubernetes_asyncio", "httpx"}
SIM = "kubetask.sim"


def python_files(directory: Path) -> list[Path]:
    """The .py files under ``directory``."""
    out = []
    for path in sorted(directory.iterdir()):
        if path.name == "__pycache__":
            continue
        if path.is_dir():
            out += python_files(path)
        elif path.suffix == ".py":
            out.append(path)
    return out


def module_name(path: Path, root: Path = ROOT) -> str:
    """``kubetask.core.jobs`` for kubetask/core/jobs.py; operator/ and api/ are kubetask.operator / kubetask.api."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] in ("operator", "api"):
        parts.insert(0, "kubetask")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from a import b`` gives a and a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package.pop()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def is_within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


PACKAGE = [p for p in python_files(ROOT / "kubetask") + python_files(ROOT / "operator") + python_files(ROOT / "api")
           if not is_within(module_name(p), SIM)]


@pytest.mark.parametrize("path", python_files(ROOT / "kubetask" / "core"), ids=lambda p: p.name)
def test_core_is_framework_free(path: Path) -> None:
    bad = {name for name in imports(path) if name.split(".")[0] in FORBIDDEN_IN_CORE}
    bad |= {name for name in imports(path) for other in ("kubetask.operator", "kubetask.api", "kubetask.kube")
            if is_within(name, other)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize(("directory", "other"), [("operator", "kubetask.api"), ("api", "kubetask.operator")])
def test_api_and_operator_are_independent(directory: str, other: str) -> None:
    files = python_files(ROOT / directory)
    assert files
    for path in files:
        bad = {name for name in imports(path) if is_within(name, other)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_cluster_imports_neither_operator_nor_api() -> None:
    files = python_files(ROOT / "kubetask" / "cluster")
    assert files
    for path in files:
        bad = {name for name in imports(path) for other in ("kubetask.operator", "kubetask.api")
               if is_within(name, other)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_nothing_imports_the_simulator() -> None:
    assert len(PACKAGE) > 50
    bad = {f"{path.relative_to(ROOT)}: {sorted(n for n in imports(path) if is_within(n, SIM))}"
           for path in PACKAGE if any(is_within(n, SIM) for n in imports(path))}
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize(("source", "filename", "found"), [
    ("import kubetask.sim.api\n", "kubetask/dev.py", "kubetask.sim.api"),
    ("from kubetask.sim import Sim\n", "kubetask/dev.py", "kubetask.sim.Sim"),
    ("from .sim import api\n", "kubetask/dev.py", "kubetask.sim.api"),
    ("from ..sim.api import Sim\n", "kubetask/cluster/launcher.py", "kubetask.sim.api.Sim"),
    ("from .. import api\n", "operator/handlers.py", "kubetask.api"),
    ("from . import sim\n", "kubetask/__init__.py", "kubetask.sim"),
    ("def f():\n    importlib.import_module('kubetask.sim')\n", "kubetask/cli.py", "kubetask.sim"),
])
def test_import_scan_sees_every_form(tmp_path: Path, source: str, filename: str, found: str) -> None:
    """The checks above can fail: absolute, relative, late and dynamic imports are all seen."""
    path = tmp_path / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert found in imports(path, root=tmp_path)
