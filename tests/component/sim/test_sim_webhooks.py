"""Admission webhooks over HTTPS with a self-signed certificate (caBundle-verified)."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from sim_helpers import api_client

from kubetask.sim import SimCluster
from kubetask.sim.tls import self_signed


class _Hook(BaseHTTPRequestHandler):
    reviews: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        _Hook.reviews.append(req)
        resp: dict[str, Any] = {"uid": req["uid"], "allowed": True}
        labels = (req["object"] or {}).get("metadata", {}).get("labels") or {}
        if self.path.startswith("/validate") and labels.get("deny") == "yes":
            resp = {"uid": req["uid"], "allowed": False, "status": {"message": "no thanks"}}
        if self.path.startswith("/mutate"):
            patch = [{"op": "add", "path": "/data", "value": {"mutated": "true"}}]
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": resp}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    cert, key = self_signed(("127.0.0.1",), cn="test-webhook")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Hook.reviews = []
    yield f"https://127.0.0.1:{srv.server_address[1]}", cert
    srv.shutdown()


def _config(kind: str, name: str, url: str, ca: bytes, policy: str = "Fail") -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": [{"name": f"{name}.test.kubetask.io", "admissionReviewVersions": ["v1"],
                          "sideEffects": "None", "failurePolicy": policy,
                          "clientConfig": {"url": url, "caBundle": base64.b64encode(ca).decode()},
                          "namespaceSelector": {"matchLabels": {"hooked": "yes"}},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["configmaps"]}]}]}


def test_webhooks_mutate_and_deny(sim_cluster: SimCluster, tmp_path: Path,
                                  webhook_server: tuple[str, bytes]) -> None:
    url, ca = webhook_server
    core = client.CoreV1Api(api_client(sim_cluster, tmp_path))
    core.create_namespace({"metadata": {"name": "hooked", "labels": {"hooked": "yes"}}})
    sim_cluster.apply_manifest([
        _config("MutatingWebhookConfiguration", "mutate", f"{url}/mutate", ca),
        _config("ValidatingWebhookConfiguration", "validate", f"{url}/validate", ca)])
    cm = core.create_namespaced_config_map("hooked", {"metadata": {"name": "a"}})
    assert cm.data == {"mutated": "true"}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("hooked", {"metadata": {"name": "b", "labels": {"deny": "yes"}}})
    body = json.loads(e.value.body)
    assert e.value.status == 400
    assert body["message"] == 'admission webhook "validate.test.kubetask.io" denied the request: no thanks'
    # Outside the selected namespace the webhooks are not called.
    assert core.create_namespaced_config_map("default", {"metadata": {"name": "c"}}).data is None
    req = _Hook.reviews[0]
    assert req["operation"] == "CREATE" and req["namespace"] == "hooked" and req["name"] == "a"
    assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert req["userInfo"]["username"] == "admin"
    assert len(sim_cluster.stats()["webhook_calls"]) == 4


def test_unreachable_webhook_fail_closed_and_ignore(sim_cluster: SimCluster, tmp_path: Path) -> None:
    core = client.CoreV1Api(api_client(sim_cluster, tmp_path))
    core.create_namespace({"metadata": {"name": "hooked", "labels": {"hooked": "yes"}}})
    sim_cluster.apply_manifest(_config("ValidatingWebhookConfiguration", "gone", "https://127.0.0.1:1/x",
                                       b"", "Ignore"))
    assert core.create_namespaced_config_map("hooked", {"metadata": {"name": "ok"}})
    sim_cluster.apply_manifest(_config("ValidatingWebhookConfiguration", "gone", "https://127.0.0.1:1/x",
                                       b"", "Fail"))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("hooked", {"metadata": {"name": "no"}})
    assert e.value.status == 500
    assert json.loads(e.value.body)["message"].startswith(
        'Internal error occurred: failed calling webhook "gone.test.kubetask.io": failed to call webhook: '
        'Post "https://127.0.0.1:1/x?timeout=10s"')
