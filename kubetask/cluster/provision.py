"""Build the real control plane's binaries from pinned Go modules, cached by version.

Each component has its own Go module under ``hack/tools/<module>/`` whose ``go.mod`` pins
one exact version (``k8s.io/kubernetes`` with its staging modules replaced by the matching
``v0.x.y`` tags, ``go.etcd.io/etcd/server/v3``, ``sigs.k8s.io/kwok``). The ordinary ``go``
client builds them; nothing prebuilt is downloaded. Binaries land in
``~/.cache/kubetask/control-plane/<module>-<version>/`` so a second run does nothing and a
version bump builds next to the old one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "hack" / "tools"
CACHE_ROOT = Path(os.environ.get("KUBETASK_CACHE_DIR", Path.home() / ".cache" / "kubetask"))

Progress = Callable[[str], None]


class ProvisionError(RuntimeError):
    """A component could not be built; the message says which and why."""


@dataclass(frozen=True)
class GoModule:
    """One pinned Go module and the commands built from it."""

    directory: str
    """Folder under ``hack/tools`` holding ``go.mod``."""

    module: str
    """The module whose required version names the cache folder."""

    commands: tuple[tuple[str, str], ...]
    """``(binary name, Go package)`` pairs built from the module."""

    stamp_kubernetes_version: bool = False
    """Stamp ``gitVersion`` etc. with ``-X``, as Kubernetes' own build does (else it reports v0.0.0-master)."""

    @property
    def go_mod(self) -> Path:
        return TOOLS_DIR / self.directory / "go.mod"

    def version(self) -> str:
        """The exact version ``go.mod`` requires."""
        text = self.go_mod.read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(v\S+)", text, re.MULTILINE)
        if match is None:
            raise ProvisionError(f"{self.go_mod} does not require {self.module}")
        return match.group(1)

    def cache_dir(self, root: Path) -> Path:
        return root / "control-plane" / f"{self.directory}-{self.version()}"


KUBERNETES = GoModule(
    "kube", "k8s.io/kubernetes",
    (("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
     ("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
     ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler")),
    stamp_kubernetes_version=True,
)
ETCD = GoModule("etcd", "go.etcd.io/etcd/server/v3", (("etcd", "go.etcd.io/etcd/server/v3"),))
KWOK = GoModule("kwok", "sigs.k8s.io/kwok", (("kwok", "sigs.k8s.io/kwok/cmd/kwok"),))
MODULES = (KUBERNETES, ETCD, KWOK)


@dataclass(frozen=True)
class Binaries:
    """Where each control-plane binary is."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kubernetes_version: str

    @classmethod
    def at(cls, root: Path) -> Binaries:
        kube, etcd, kwok = (module.cache_dir(root) for module in MODULES)
        return cls(etcd=etcd / "etcd", kube_apiserver=kube / "kube-apiserver",
                   kube_controller_manager=kube / "kube-controller-manager",
                   kube_scheduler=kube / "kube-scheduler", kwok=kwok / "kwok",
                   kubernetes_version=KUBERNETES.version())

    def missing(self) -> list[Path]:
        paths = (self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kube_scheduler, self.kwok)
        return [path for path in paths if not os.access(path, os.X_OK)]


def _ldflags(module: GoModule) -> str:
    flags = ["-s", "-w"]
    version = module.version()
    if module.stamp_kubernetes_version:
        major, minor = version.lstrip("v").split(".")[:2]
        stamp = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean",
                 "gitCommit": hashlib.sha1(version.encode()).hexdigest(),
                 "buildDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {package}.{key}={value}" for key, value in stamp.items()]
    return " ".join(flags)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ProvisionError("the `go` command is needed to build the control plane (Go 1.26 or newer)")
    return go


def _build(module: GoModule, target: Path, progress: Progress) -> None:
    """``go build`` every command of ``module`` into ``target``, reporting compiled packages as it goes."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names = ", ".join(name for name, _ in module.commands)
    progress(f"building {names} {module.version()} from {module.module} (first time only)")
    # One command gets an explicit file name (go would name etcd's binary "server" after its
    # package path); several go to a folder, named after their packages, in one parallel build.
    output = str(staging / module.commands[0][0]) if len(module.commands) == 1 else str(staging) + os.sep
    cmd = [_go(), "build", "-v", f"-ldflags={_ldflags(module)}", "-o", output,
           *(package for _, package in module.commands)]
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    started = time.monotonic()
    compiled = 0
    tail: list[str] = []
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(15):
            progress(f"  ... {names}: {compiled} packages compiled, {time.monotonic() - started:.0f} s")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with subprocess.Popen(cmd, cwd=module.go_mod.parent, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                compiled += 1
                tail = [*tail[-39:], line.rstrip()]
            code = proc.wait()
    finally:
        done.set()
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ProvisionError(f"go build of {names} failed (exit {code}):\n" + "\n".join(tail))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    progress(f"built {names} in {time.monotonic() - started:.0f} s -> {target}")


def provision(root: Path = CACHE_ROOT, progress: Progress | None = None) -> Binaries:
    """Build whatever is not cached yet and return where every binary is. Idempotent."""
    say = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    root.mkdir(parents=True, exist_ok=True)
    # Two provisioners at once (a `kubetask dev` and a pytest session) would build into the same
    # staging folder and rename it from under each other: the second waits, then finds the cache warm.
    with open(root / ".lock", "w") as lock:
        if not _try_lock(lock):
            say(f"another provisioning run holds {root / '.lock'}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        for module in MODULES:
            target = module.cache_dir(root)
            if all(os.access(target / name, os.X_OK) for name, _ in module.commands):
                continue
            if not module.go_mod.exists():
                raise ProvisionError(f"{module.go_mod} is missing: provisioning needs the kubetask source checkout")
            _build(module, target, say)
    binaries = Binaries.at(root)
    if binaries.missing():
        raise ProvisionError(f"missing after provisioning: {', '.join(map(str, binaries.missing()))}")
    return binaries


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def cached_binaries(root: Path = CACHE_ROOT) -> Binaries | None:
    """The binaries if all of them are cached, else ``None`` (never builds)."""
    binaries = Binaries.at(root)
    return None if binaries.missing() else binaries
