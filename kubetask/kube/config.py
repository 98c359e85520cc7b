"""Where the cluster is and how to authenticate: kubeconfig files, the in-cluster service account, exec plugins.

Why not kubernetes_asyncio's loader: importing any part of that package imports its whole generated client,
about 60 MB of RSS in every process, and Kopf then also imports it (and the sync ``kubernetes`` client) to
recognise their models, which kubetask never hands it. The subset of the kubeconfig format that client-go
honours for a connection is small and stable, so it is read here:

- clusters: ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``, ``tls-server-name``,
  ``proxy-url``;
- users: ``client-certificate(-data)``, ``client-key(-data)``, ``token``, ``tokenFile``,
  ``username``/``password``, ``exec`` (client.authentication.k8s.io v1 and v1beta1, e.g. EKS's
  ``aws eks get-token``, GKE's ``gke-gcloud-auth-plugin``, ``kubelogin``), ``as``/``as-groups``/``as-uid``;
- ``$KUBECONFIG`` as a list of files, merged as kubectl merges them (the first file naming an entry wins).

The removed ``auth-provider`` plugins (gcp, azure, oidc) are refused with a pointer to their exec replacements.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import contextlib
import json
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where a pod finds its service account's token, the cluster's CA and its namespace."""

TOKEN_FILE_MAX_AGE = 60.0
"""Seconds a token read from a file is used before the file is read again: the kubelet rotates projected
service-account tokens in place (client-go re-reads it every minute too)."""

EXEC_TIMEOUT = 60.0
"""Seconds an exec credential plugin may run before the request that needed it fails."""

EXEC_EARLY_REFRESH = 10.0
"""Seconds before its ``expirationTimestamp`` that an exec credential is renewed, so no request carries a token
that expires on the way."""


class KubeConfigError(Exception):
    """The kubeconfig (or the in-cluster environment) does not describe a usable connection."""


@dataclass(frozen=True)
class ExecPlugin:
    """A ``users[].user.exec`` entry: a command that prints an ExecCredential."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = "client.authentication.k8s.io/v1"
    provide_cluster_info: bool = False
    cluster_info: Mapping[str, Any] = field(default_factory=dict)
    """The ``cluster`` part of ``KUBERNETES_EXEC_INFO`` when ``provideClusterInfo`` is set."""


@dataclass(frozen=True)
class ClusterAccess:
    """One apiserver endpoint and the credentials to use with it."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    """PEM text of the CA bundle (kubeconfig's base64 ``certificate-authority-data`` decoded)."""
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: str | None = None
    key_data: str | None = None
    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    exec_plugin: ExecPlugin | None = None
    impersonate_user: str | None = None
    impersonate_groups: tuple[str, ...] = ()
    impersonate_uid: str | None = None
    namespace: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for an ``https`` server (``None`` for plain http)."""
        if not self.server.startswith("https"):
            return None
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert_file = self.cert_file or (_private_file(self.cert_data) if self.cert_data else None)
        key_file = self.key_file or (_private_file(self.key_data) if self.key_data else None)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
        return context

    def fixed_headers(self) -> list[tuple[str, str]]:
        """Headers every request carries whatever the credentials: impersonation (a group per header)."""
        headers: list[tuple[str, str]] = []
        if self.impersonate_user:
            headers.append(("Impersonate-User", self.impersonate_user))
        headers.extend(("Impersonate-Group", group) for group in self.impersonate_groups)
        if self.impersonate_uid:
            headers.append(("Impersonate-Uid", self.impersonate_uid))
        return headers


_PRIVATE_FILES: list[str] = []


def _remove_private_files() -> None:
    for path in _PRIVATE_FILES:
        with contextlib.suppress(OSError):
            os.unlink(path)


atexit.register(_remove_private_files)


def _private_file(pem: str) -> str:
    """``ssl`` loads client certificates only from files: write embedded PEM to a 0600 file, removed at exit."""
    descriptor, path = tempfile.mkstemp(prefix="kubetask-", suffix=".pem")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pem)
    _PRIVATE_FILES.append(path)
    return path


# ---------------------------------------------------------------------- credentials


class Credentials:
    """The ``Authorization`` header of a :class:`ClusterAccess`, renewed when it can expire.

    Static tokens and basic auth never change; a token file is re-read every :data:`TOKEN_FILE_MAX_AGE`
    seconds; an exec plugin runs again shortly before its credential's expiry, or after the apiserver
    answered 401 (:meth:`invalidate`). Concurrent requests share one plugin run.
    """

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access
        self._value: str | None = None
        self._expires: float = 0.0  # monotonic; 0: never read
        self._lock = asyncio.Lock()

    @property
    def renewable(self) -> bool:
        """Whether a 401 can be cured by asking again (a token file or an exec plugin)."""
        return bool(self.access.exec_plugin or self.access.token_file)

    def invalidate(self) -> None:
        self._expires = 0.0

    async def authorization(self) -> str | None:
        access = self.access
        if access.exec_plugin is None and access.token_file is None:
            if access.token:
                return f"Bearer {access.token}"
            if access.username is not None and access.password is not None:
                raw = f"{access.username}:{access.password}".encode()
                return "Basic " + base64.b64encode(raw).decode()
            return None
        if self._expires and time.monotonic() < self._expires:
            return self._value
        async with self._lock:
            if not (self._expires and time.monotonic() < self._expires):
                self._value, self._expires = await self._renew()
        return self._value

    async def expiration(self) -> datetime | None:
        """When the current credential stops being valid (wall clock), if it expires at all."""
        await self.authorization()
        remaining = self._expires - time.monotonic()
        if not self.renewable or remaining == float("inf"):
            return None
        return datetime.fromtimestamp(time.time() + max(0.0, remaining), UTC)

    async def _renew(self) -> tuple[str | None, float]:
        access = self.access
        if access.exec_plugin is not None:
            token, expires_at = await run_exec_plugin(access.exec_plugin)
            lifetime = (expires_at - time.time() - EXEC_EARLY_REFRESH) if expires_at is not None else float("inf")
            # An already expired credential is still used once (the apiserver judges it) but asked for again.
            return f"Bearer {token}", time.monotonic() + max(lifetime, 0.001)
        assert access.token_file is not None
        return f"Bearer {_read_token_file(access.token_file)}", time.monotonic() + TOKEN_FILE_MAX_AGE


def _read_token_file(path: str) -> str:
    # A few hundred bytes, once a minute: not worth a thread hop.
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise KubeConfigError(f"cannot read the token file {path}: {error}") from error


async def run_exec_plugin(plugin: ExecPlugin) -> tuple[str, float | None]:
    """Run an exec credential plugin; returns its token and its expiry (epoch seconds) if it gave one."""
    exec_info: dict[str, Any] = {"apiVersion": plugin.api_version, "kind": "ExecCredential",
                                 "spec": {"interactive": False}}
    if plugin.provide_cluster_info:
        exec_info["spec"]["cluster"] = dict(plugin.cluster_info)
    env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(exec_info)}
    try:
        process = await asyncio.create_subprocess_exec(
            plugin.command, *plugin.args, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as error:
        raise KubeConfigError(f"cannot run the exec credential plugin {plugin.command!r}: {error}") from error
    try:
        out, err = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT)
    except TimeoutError as error:
        process.kill()
        raise KubeConfigError(f"the exec credential plugin {plugin.command!r} ran over {EXEC_TIMEOUT:.0f} s") \
            from error
    if process.returncode != 0:
        raise KubeConfigError(f"the exec credential plugin {plugin.command!r} exited {process.returncode}: "
                              f"{err.decode(errors='replace').strip()[:500]}")
    try:
        status = json.loads(out)["status"]
    except (ValueError, KeyError, TypeError) as error:
        raise KubeConfigError(f"the exec credential plugin {plugin.command!r} printed no ExecCredential "
                              "with a status") from error
    token = status.get("token")
    if not token:
        raise KubeConfigError(f"the exec credential plugin {plugin.command!r} returned no token "
                              "(client-certificate credentials from plugins are not supported)")
    expires = status.get("expirationTimestamp")
    if not expires:
        return str(token), None
    try:
        return str(token), datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
    except ValueError as error:
        raise KubeConfigError(f"the exec credential plugin {plugin.command!r} gave an unreadable "
                              f"expirationTimestamp {expires!r}") from error


# ---------------------------------------------------------------------- loading


def in_cluster_access(directory: Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None
                      ) -> ClusterAccess:
    """The service account of the pod this runs in (raises :class:`KubeConfigError` outside a pod)."""
    environ = os.environ if environ is None else environ
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token_file = directory / "token"
    if not host or not port or not token_file.exists():
        raise KubeConfigError("not running in a pod: no KUBERNETES_SERVICE_HOST/PORT or service-account token")
    if ":" in host:
        host = f"[{host}]"
    namespace_file = directory / "namespace"
    ca_file = directory / "ca.crt"
    return ClusterAccess(
        server=f"https://{host}:{port}",
        ca_file=str(ca_file) if ca_file.exists() else None,
        token_file=str(token_file),
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )


def kubeconfig_paths(kubeconfig: str | None = None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The files to merge: the one named, else ``$KUBECONFIG``'s list, else ``~/.kube/config``."""
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    environ = os.environ if environ is None else environ
    listed = [Path(p).expanduser() for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return listed or [Path.home() / ".kube" / "config"]


@dataclass
class _Merged:
    current_context: str | None = None
    entries: dict[str, dict[str, tuple[Mapping[str, Any], Path]]] = field(
        default_factory=lambda: {"clusters": {}, "users": {}, "contexts": {}})


def _merge(paths: list[Path], required: bool) -> _Merged:
    merged = _Merged()
    for path in paths:
        if not path.exists():
            if required:
                raise KubeConfigError(f"kubeconfig {path} does not exist")
            continue
        try:
            body = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise KubeConfigError(f"cannot read kubeconfig {path}: {error}") from error
        if not isinstance(body, Mapping):
            raise KubeConfigError(f"kubeconfig {path} is not a mapping")
        merged.current_context = merged.current_context or body.get("current-context") or None
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in body.get(section) or []:
                if isinstance(entry, Mapping) and entry.get("name") and entry["name"] not in merged.entries[section]:
                    merged.entries[section][str(entry["name"])] = (entry.get(inner) or {}, path.parent)
    return merged


def _path(value: Any, base: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else base / path)


def _pem(value: Any, what: str) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise KubeConfigError(f"{what} is not base64 PEM") from error


def _exec_plugin(spec: Mapping[str, Any], base: Path, cluster: Mapping[str, Any]) -> ExecPlugin:
    command = str(spec.get("command") or "")
    if not command:
        raise KubeConfigError("the user's exec entry names no command")
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)  # client-go: a relative path with a separator is relative to the file
    env = tuple((str(item["name"]), str(item.get("value", ""))) for item in spec.get("env") or []
                if isinstance(item, Mapping) and item.get("name"))
    cluster_info = {key: cluster[key] for key in ("server", "certificate-authority-data",
                                                  "insecure-skip-tls-verify", "tls-server-name", "proxy-url")
                    if key in cluster}
    return ExecPlugin(command=command, args=tuple(str(a) for a in spec.get("args") or []), env=env,
                      api_version=str(spec.get("apiVersion") or "client.authentication.k8s.io/v1"),
                      provide_cluster_info=bool(spec.get("provideClusterInfo")), cluster_info=cluster_info)


def kubeconfig_access(kubeconfig: str | None = None, context: str | None = None,
                      environ: Mapping[str, str] | None = None) -> ClusterAccess:
    """The connection a kubeconfig's ``context`` (default: its current context) describes."""
    paths = kubeconfig_paths(kubeconfig, environ)
    merged = _merge(paths, required=bool(kubeconfig))
    name = context or merged.current_context
    if not name:
        raise KubeConfigError(f"no context chosen and no current-context in {', '.join(map(str, paths))}")
    if name not in merged.entries["contexts"]:
        raise KubeConfigError(f"context {name!r} is not in {', '.join(map(str, paths))}")
    ctx, _ = merged.entries["contexts"][name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in merged.entries["clusters"]:
        raise KubeConfigError(f"context {name!r} names the cluster {cluster_name!r}, which is not defined")
    cluster, cluster_base = merged.entries["clusters"][cluster_name]
    if user_name and user_name not in merged.entries["users"]:
        raise KubeConfigError(f"context {name!r} names the user {user_name!r}, which is not defined")
    user, user_base = merged.entries["users"][user_name] if user_name else ({}, cluster_base)
    if not cluster.get("server"):
        raise KubeConfigError(f"cluster {cluster_name!r} has no server")
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name", "?")
        raise KubeConfigError(f"user {user_name!r} uses the removed auth-provider {provider!r}; use its exec "
                              "plugin (gke-gcloud-auth-plugin, kubelogin, oidc-login) instead")
    ca_data = _pem(cluster.get("certificate-authority-data"), f"cluster {cluster_name!r}'s certificate-authority-data")
    return ClusterAccess(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=None if ca_data else _path(cluster.get("certificate-authority"), cluster_base),
        ca_data=ca_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=cluster.get("proxy-url") or None,
        cert_data=_pem(user.get("client-certificate-data"), f"user {user_name!r}'s client-certificate-data"),
        key_data=_pem(user.get("client-key-data"), f"user {user_name!r}'s client-key-data"),
        cert_file=None if user.get("client-certificate-data") else _path(user.get("client-certificate"), user_base),
        key_file=None if user.get("client-key-data") else _path(user.get("client-key"), user_base),
        token=str(user["token"]) if user.get("token") else None,
        token_file=_path(user.get("tokenFile"), user_base) if not user.get("token") else None,
        username=user.get("username"),
        password=user.get("password"),
        exec_plugin=_exec_plugin(user["exec"], user_base, cluster) if user.get("exec") else None,
        impersonate_user=user.get("as") or None,
        impersonate_groups=tuple(str(g) for g in user.get("as-groups") or []),
        impersonate_uid=user.get("as-uid") or None,
        namespace=ctx.get("namespace") or None,
    )


def load_access(kubeconfig: str | None = None, context: str | None = None) -> ClusterAccess:
    """With no ``kubeconfig`` named: the pod's service account if in one, else ``$KUBECONFIG`` /
    ``~/.kube/config``. A named kubeconfig (and ``context``) is used as given."""
    if kubeconfig is None and context is None:
        try:
            return in_cluster_access()
        except KubeConfigError:
            pass
    return kubeconfig_access(kubeconfig, context)


__all__ = ["ClusterAccess", "Credentials", "ExecPlugin", "KubeConfigError", "in_cluster_access",
           "kubeconfig_access", "kubeconfig_paths", "load_access", "run_exec_plugin"]
