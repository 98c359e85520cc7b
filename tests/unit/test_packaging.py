"""The distribution's layout: top-level api/ and operator/ install as kubetask.api / kubetask.operator.

No symlinks do this (they break with core.symlinks=false and on Windows): pyproject's
``package-dir`` does, and its explicit ``packages`` list must name every package folder.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders() -> dict[str, Path]:
    """Every folder holding an ``__init__.py``, by the import name it installs as."""
    mapped = {name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()}
    roots = {"kubetask": ROOT / "kubetask", **mapped}
    found: dict[str, Path] = {}
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(root).parts
            found[".".join((name, *relative))] = init.parent
    return found


def test_every_package_folder_is_listed() -> None:
    assert sorted(_package_folders()) == sorted(SETUPTOOLS["packages"])


def test_api_and_operator_are_mapped_not_linked() -> None:
    assert SETUPTOOLS["package-dir"] == {"kubetask.api": "api", "kubetask.operator": "operator"}
    assert not (ROOT / "kubetask" / "api").exists() and not (ROOT / "kubetask" / "operator").exists()
    tracked = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert [line for line in tracked.splitlines() if line.startswith("120000")] == [], "no symlinks in the repo"


def test_the_mapped_packages_import_from_their_folders() -> None:
    import kubetask.api.app
    import kubetask.operator.runner

    assert Path(kubetask.api.app.__file__).resolve() == ROOT / "api" / "app.py"
    assert Path(kubetask.operator.runner.__file__).resolve() == ROOT / "operator" / "runner.py"
