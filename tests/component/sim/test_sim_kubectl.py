"""The real kubectl v1.33 against the sim (skipped when the binary is absent)."""

from __future__ import annotations

import json

import pytest
from sim_helpers import WIDGET_CRD

from kubetask.sim import SimCluster

pytestmark = pytest.mark.kubectl

WIDGET = """apiVersion: test.kubetask.io/v1
kind: Widget
metadata:
  name: w1
spec:
  color: red
  size: 3
"""


def test_kubectl_crud_on_custom_resources(sim_cluster: SimCluster, kubectl) -> None:  # type: ignore[no-untyped-def]
    sim_cluster.apply_manifest(WIDGET_CRD)
    assert "widget.test.kubetask.io/w1 created" in kubectl("create", "-f", "-", input=WIDGET).stdout
    out = kubectl("get", "widgets").stdout.splitlines()
    assert out[0].split() == ["NAME", "SIZE", "PHASE", "AGE"]
    assert out[1].split()[:2] == ["w1", "3"]
    assert "configured" in kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 4")).stdout
    kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":6}}')
    obj = json.loads(kubectl("get", "wd", "w1", "-o", "json").stdout)
    assert obj["spec"]["size"] == 6 and obj["spec"]["minSize"] == 0
    assert "size: 6" in kubectl("get", "widget", "w1", "-o", "yaml").stdout
    bad = kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":11}}', check=False)
    assert bad.returncode != 0
    assert "spec.size in body should be less than or equal to 10" in bad.stderr
    unknown = kubectl("create", "-f", "-", input=WIDGET.replace("w1", "w2").replace("size: 3", "bogus: 3"),
                      check=False)
    assert unknown.returncode != 0 and 'unknown field "spec.bogus"' in unknown.stderr
    assert "minSize" in kubectl("explain", "widget.spec").stdout
    assert 'widget.test.kubetask.io "w1" deleted' in kubectl("delete", "widget", "w1").stdout
    assert kubectl("get", "widgets", "-o", "name").stdout.strip() == ""


def test_kubectl_builtins_and_auth(kubectl) -> None:  # type: ignore[no-untyped-def]
    kubectl("create", "configmap", "cfg", "--from-literal=a=b")
    assert json.loads(kubectl("get", "cm", "cfg", "-o", "json").stdout)["data"] == {"a": "b"}
    kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg2\ndata:\n  k: v\n")
    assert json.loads(kubectl("get", "cm", "cfg2", "-o", "json").stdout)["data"] == {"k": "v"}
    nodes = kubectl("get", "nodes").stdout
    assert "gpu-node-1" in nodes and "Ready" in nodes
    assert kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "create", "pods", "--as=nobody", check=False).stdout.strip() == "no"
