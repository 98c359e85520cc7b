"""kubetask's kubeconfig / in-cluster loader and credentials: what client-go would connect with."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetask.kube.config import (
    ClusterAccess,
    Credentials,
    KubeConfigError,
    in_cluster_access,
    kubeconfig_access,
    kubeconfig_paths,
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(path: Path, *, clusters: list[Any], users: list[Any], contexts: list[Any],
           current: str | None = None) -> Path:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users,
                            "contexts": contexts}
    if current:
        body["current-context"] = current
    path.write_text(yaml.safe_dump(body))
    return path


def _simple(path: Path, *, server: str = "https://k8s.example:6443", user: dict[str, Any] | None = None,
            cluster: dict[str, Any] | None = None, name: str = "dev") -> Path:
    return _write(path, clusters=[{"name": name, "cluster": {"server": server, **(cluster or {})}}],
                  users=[{"name": name, "user": user if user is not None else {"token": "t0k"}}],
                  contexts=[{"name": name, "context": {"cluster": name, "user": name, "namespace": "ml"}}],
                  current=name)


def test_embedded_data_is_decoded_and_relative_files_resolve_against_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = _simple(tmp_path / "conf" / "config",
                   cluster={"certificate-authority-data": _b64("CA PEM"), "tls-server-name": "apiserver"},
                   user={"client-certificate": "certs/me.crt", "client-key": "/abs/me.key"})
    access = kubeconfig_access(str(path))
    assert access.server == "https://k8s.example:6443"
    assert access.ca_data == "CA PEM" and access.ca_file is None
    assert access.cert_file == str(tmp_path / "conf" / "certs" / "me.crt")
    assert access.key_file == "/abs/me.key"
    assert access.tls_server_name == "apiserver" and access.namespace == "ml"


def test_kubeconfig_list_merges_with_the_first_file_winning(tmp_path: Path) -> None:
    first = _write(tmp_path / "a", clusters=[{"name": "c", "cluster": {"server": "https://first"}}],
                   users=[], contexts=[{"name": "x", "context": {"cluster": "c", "user": "u"}}])
    second = _write(tmp_path / "b", clusters=[{"name": "c", "cluster": {"server": "https://second"}}],
                    users=[{"name": "u", "user": {"token": "from-b"}}],
                    contexts=[{"name": "x", "context": {"cluster": "other", "user": "u"}}], current="x")
    environ = {"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{second}"}
    assert kubeconfig_paths(environ=environ) == [first, tmp_path / "missing", second]
    access = kubeconfig_access(environ=environ)
    assert (access.server, access.token) == ("https://first", "from-b")


def test_unusable_kubeconfigs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="does not exist"):
        kubeconfig_access(str(tmp_path / "nope"))
    path = _simple(tmp_path / "c")
    with pytest.raises(KubeConfigError, match="context 'prod' is not in"):
        kubeconfig_access(str(path), "prod")
    gcp = _simple(tmp_path / "gcp", user={"auth-provider": {"name": "gcp"}})
    with pytest.raises(KubeConfigError, match=r"removed auth-provider 'gcp'.*gke-gcloud-auth-plugin"):
        kubeconfig_access(str(gcp))
    bad = _simple(tmp_path / "bad", cluster={"certificate-authority-data": "not base64!"})
    with pytest.raises(KubeConfigError, match="certificate-authority-data is not base64"):
        kubeconfig_access(str(bad))


def test_impersonation_becomes_headers(tmp_path: Path) -> None:
    path = _simple(tmp_path / "c", user={"token": "t", "as": "jane", "as-groups": ["ml", "gpu"], "as-uid": "42"})
    headers = kubeconfig_access(str(path)).fixed_headers()
    assert headers == [("Impersonate-User", "jane"), ("Impersonate-Group", "ml"), ("Impersonate-Group", "gpu"),
                       ("Impersonate-Uid", "42")]


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("kubetask-system")
    access = in_cluster_access(tmp_path, {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
    assert access.server == "https://[fd00::1]:443"
    assert access.token_file == str(tmp_path / "token") and access.namespace == "kubetask-system"
    with pytest.raises(KubeConfigError, match="not running in a pod"):
        in_cluster_access(tmp_path, {})


async def test_static_and_basic_credentials() -> None:
    assert await Credentials(ClusterAccess("https://x", token="abc")).authorization() == "Bearer abc"
    basic = await Credentials(ClusterAccess("https://x", username="u", password="p")).authorization()
    assert basic == "Basic " + _b64("u:p")
    assert await Credentials(ClusterAccess("https://x")).authorization() is None


async def test_token_file_is_reread_after_invalidation(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    credentials = Credentials(ClusterAccess("https://x", token_file=str(token)))
    assert await credentials.authorization() == "Bearer one"
    token.write_text("two\n")
    assert await credentials.authorization() == "Bearer one"  # cached for a minute, as client-go does
    credentials.invalidate()
    assert await credentials.authorization() == "Bearer two"


def _plugin(tmp_path: Path, *, expires_in: float | None, fail: bool = False) -> Path:
    """An exec credential plugin that counts its runs and echoes the cluster info it was given."""
    script = tmp_path / "plugin.py"
    expiry = ("None" if expires_in is None else
              f"__import__('datetime').datetime.fromtimestamp({time.time() + expires_in}, "
              "__import__('datetime').UTC).isoformat()")
    script.write_text(f"""#!{sys.executable}
import json, os, pathlib, sys
runs = pathlib.Path(sys.argv[1]); runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else "1")
if {fail}:
    print("no credentials for you", file=sys.stderr); sys.exit(3)
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
server = info["spec"]["cluster"]["server"]
status = {{"token": "tok-" + runs.read_text() + "-" + os.environ["PLUGIN_ENV"] + "-" + server}}
expires = {expiry}
if expires:
    status["expirationTimestamp"] = expires
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}}))
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _exec_kubeconfig(tmp_path: Path, script: Path) -> ClusterAccess:
    path = _simple(tmp_path / "config", server="https://eks.example", user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": f"./{script.name}",
        "args": [str(tmp_path / "runs")], "env": [{"name": "PLUGIN_ENV", "value": "e"}],
        "provideClusterInfo": True}})
    return kubeconfig_access(str(path))


async def test_exec_plugin_token_is_cached_until_it_nears_expiry(tmp_path: Path) -> None:
    access = _exec_kubeconfig(tmp_path, _plugin(tmp_path, expires_in=3600))
    assert access.exec_plugin is not None and access.exec_plugin.command == str(tmp_path / "plugin.py")
    credentials = Credentials(access)
    assert await credentials.authorization() == "Bearer tok-1-e-https://eks.example"
    assert await credentials.authorization() == "Bearer tok-1-e-https://eks.example"
    expiration = await credentials.expiration()
    assert expiration is not None and 3500 < expiration.timestamp() - time.time() <= 3600
    credentials.invalidate()  # what a 401 does
    assert await credentials.authorization() == "Bearer tok-2-e-https://eks.example"


async def test_exec_plugin_near_expiry_runs_again_and_failures_are_explained(tmp_path: Path) -> None:
    credentials = Credentials(_exec_kubeconfig(tmp_path, _plugin(tmp_path, expires_in=5)))  # < early refresh
    assert await credentials.authorization() == "Bearer tok-1-e-https://eks.example"
    await asyncio.sleep(0.01)
    assert await credentials.authorization() == "Bearer tok-2-e-https://eks.example"
    failing = Credentials(_exec_kubeconfig(tmp_path, _plugin(tmp_path, expires_in=None, fail=True)))
    with pytest.raises(KubeConfigError, match="exited 3: no credentials for you"):
        await failing.authorization()


def test_exec_info_carries_the_cluster(tmp_path: Path) -> None:
    access = _exec_kubeconfig(tmp_path, _plugin(tmp_path, expires_in=None))
    assert access.exec_plugin is not None
    assert json.loads(json.dumps(dict(access.exec_plugin.cluster_info))) == {"server": "https://eks.example"}
    assert access.exec_plugin.api_version == "client.authentication.k8s.io/v1beta1"
