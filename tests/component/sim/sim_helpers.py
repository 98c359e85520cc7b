"""Helpers shared by the sim component tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config

from kubetask.sim import SimCluster

T = TypeVar("T")

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kubetask.io"},
    "spec": {
        "group": "test.kubetask.io",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["color"],
                        "x-kubernetes-validations": [
                            {"rule": "self.minSize <= self.size", "message": "minSize must not exceed size"},
                            {"rule": "self.color == oldSelf.color", "message": "color is immutable"},
                        ],
                        "properties": {
                            "color": {"type": "string", "enum": ["red", "green", "blue"]},
                            "size": {"type": "integer", "minimum": 0, "maximum": 10, "default": 5},
                            "minSize": {"type": "integer", "default": 0},
                            "label": {"type": "string", "maxLength": 8},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    },
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                },
            }},
        }],
    },
}


def api_client(cluster: SimCluster, tmp: Path, **kw: Any) -> client.ApiClient:
    path = cluster.write_kubeconfig(tmp / f"kc-{kw.get('user', 'admin')}", **kw)
    return config.new_client_from_config(str(path))


def wait_for(fn: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or fn}: last={last!r}")
