"""An operator-only process never loads the client libraries Kopf would import for their model classes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
forgo = {forgo}
if forgo:
    from kubetask.kube.memory import forgo_unused_clients
    blocked = forgo_unused_clients()
else:
    blocked = []
import kopf
from kubetask.operator.runner import run_operator
from kubetask.operator.handlers import build_registry
try:
    import kubernetes.client
    importable = True
except ImportError:
    importable = False
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes" and sys.modules[m] is not None)
print(json.dumps({{"blocked": blocked, "loaded": loaded, "importable": importable,
                  "kopf_handler": hasattr(kopf.on, "create")}}))
"""


def _probe(forgo: bool) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-P", "-c", PROBE.format(forgo=forgo)], capture_output=True, text=True,
                          check=True, timeout=60)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_operator_process_goes_without_the_kubernetes_client() -> None:
    pytest.importorskip("kubernetes")  # installed with the dev extra: without the call, Kopf loads it
    assert _probe(forgo=False)["loaded"], "Kopf no longer imports the kubernetes client: this test proves nothing"
    forgone = _probe(forgo=True)
    assert "kubernetes" in forgone["blocked"]  # type: ignore[operator]
    assert forgone["loaded"] == [] and forgone["importable"] is False
    assert forgone["kopf_handler"] is True


def test_a_client_already_imported_is_left_alone() -> None:
    from kubetask.kube.memory import forgo_unused_clients

    before = dict(sys.modules)
    try:
        sys.modules.setdefault("kubernetes", sys)  # stands in for an imported module
        assert "kubernetes" not in forgo_unused_clients()
        assert sys.modules["kubernetes"] is not None
    finally:
        for name in set(sys.modules) - set(before):
            del sys.modules[name]
        for name, module in before.items():
            sys.modules[name] = module
