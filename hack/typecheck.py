"""mypy --strict over the package as it installs: ``kubetask/`` plus ``api/`` and ``operator/``.

pyproject's ``package-dir`` maps ``api/`` and ``operator/`` to ``kubetask.api`` and
``kubetask.operator``. Python follows that through setuptools' editable import hook; mypy
cannot (pypa/setuptools#3518), so this builds a view of the package out of symlinks in
``.mypy-view/`` (untracked, remade on every run) and checks ``-p kubetask`` there.

Usage: ``python hack/typecheck.py [extra mypy arguments]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEW = ROOT / ".mypy-view"


def build_view() -> Path:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {name.split(".", 1)[1]: ROOT / folder for name, folder in config["package-dir"].items()}
    shutil.rmtree(VIEW, ignore_errors=True)
    package = VIEW / "kubetask"
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "kubetask").iterdir()):
        if entry.name not in mapped and entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in mapped.items():
        (package / name).symlink_to(folder)
    return VIEW


def main() -> int:
    view = build_view()
    env = {**os.environ, "MYPYPATH": str(view)}
    return subprocess.call([sys.executable, "-P", "-m", "mypy", "-p", "kubetask", *sys.argv[1:]], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
