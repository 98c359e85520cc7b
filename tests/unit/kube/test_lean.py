"""What the caches' transforms share between objects, and what they keep to each object alone."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import sys
from asyncio import sslproto
from pathlib import Path
from typing import Any

import pytest

from kubetask.cluster.pki import CertificateAuthority
from kubetask.kube import lean
from kubetask.kube.memory import TLS_READ_BUFFER_BYTES, small_tls_read_buffers

OBJECTS: dict[str, list[dict[str, Any]]] = json.loads((Path(__file__).parent / "apiserver_objects.json").read_text())


@pytest.fixture(autouse=True)
def empty_shared_table() -> None:
    lean._SHARED.clear()


def renamed(obj: dict[str, Any], index: int, *, second: int = 0) -> dict[str, Any]:
    """The same object as another one of its kind would be: its own name, uid and version; its conditions
    changed at ``second``."""
    copy: dict[str, Any] = json.loads(json.dumps(obj))
    meta = copy["metadata"]
    meta.update(name=f"{meta['name']}-{index}", uid=f"uid-{index}", resourceVersion=str(1000 + index))
    for label in ("kubetask.io/task",):
        if label in (meta.get("labels") or {}):
            meta["labels"][label] = f"{meta['labels'][label]}-{index}"
    for condition in (copy.get("status") or {}).get("conditions") or []:
        condition["lastTransitionTime"] = f"2026-12-04T10:00:{second:02d}Z"
    return copy


def test_equal_specs_of_two_tasks_are_one_object() -> None:
    task = OBJECTS["tasks"][-1]
    first, second = lean.lean_task(renamed(task, 1)), lean.lean_task(renamed(task, 2))
    assert first["spec"] == task["spec"]
    assert first["spec"] is second["spec"]
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_pods_of_different_tasks_share_what_is_alike_and_keep_their_own_labels() -> None:
    pods = [lean.lean_pod(renamed(OBJECTS["pods"][-1], i)) for i in range(10)]
    assert len({id(p["spec"]) for p in pods}) == 1  # one shape, one node
    assert len({id(p["status"]) for p in pods}) == 1  # ended alike, in the same second
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert len({id(p["metadata"]["labels"]) for p in pods}) == 10
    labels = {id(p["metadata"]["labels"]) for p in pods}
    assert not labels & {id(value) for value in lean._SHARED.values()}  # never offered: they are each pod's own


def test_a_difference_deep_inside_keeps_two_values_apart() -> None:
    ok, failed = (json.loads(json.dumps(OBJECTS["pods"][-1])) for _ in range(2))
    failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 3
    kept_ok, kept_failed = lean.lean_pod(ok), lean.lean_pod(failed)
    assert kept_ok["spec"] is kept_failed["spec"]
    assert kept_ok["status"] is not kept_failed["status"]
    assert kept_failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert kept_ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_jobs_that_end_in_different_seconds_keep_their_own_conditions() -> None:
    job = OBJECTS["jobs"][-1]
    early, late = lean.lean_job(renamed(job, 1, second=1)), lean.lean_job(renamed(job, 2, second=2))
    again = lean.lean_job(renamed(job, 3, second=1))
    assert early["status"] is again["status"] and early["status"] is not late["status"]
    assert {c["lastTransitionTime"] for c in late["status"]["conditions"]} == {"2026-12-04T10:00:02Z"}


def test_a_pod_keeps_the_uid_of_a_task_that_owns_it_but_not_of_its_job() -> None:
    pod = json.loads(json.dumps(OBJECTS["pods"][-1]))
    assert [ref["kind"] for ref in pod["metadata"]["ownerReferences"]] == ["Job"]
    assert "ownerReferences" not in lean.lean_pod(pod)["metadata"]
    pod["metadata"]["ownerReferences"].append({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "name": "t",
                                               "uid": "task-uid", "controller": True})
    assert lean.lean_pod(pod)["metadata"]["ownerReferences"] == [{"uid": "task-uid"}]
    job = lean.lean_job(json.loads(json.dumps(OBJECTS["jobs"][-1])))
    assert job["metadata"]["ownerReferences"] == [{"uid": OBJECTS["jobs"][-1]["metadata"]["ownerReferences"][0]["uid"]}]


def test_a_large_value_is_not_shared() -> None:
    big = {f"key{i}": f"value{i}" for i in range(lean._SHARED_LEAVES + 1)}
    assert lean.compact(big) == big
    assert lean.compact(big) is not lean.compact(big)
    small = dict(list(big.items())[:lean._SHARED_LEAVES])
    assert lean.compact(small) is lean.compact(small)


@pytest.mark.parametrize(("one", "other"), [({"gpus": 1}, {"gpus": True}), ({"gpus": 1}, {"gpus": 1.0}),
                                            ({"x": 0}, {"x": False})])
def test_values_that_compare_equal_but_differ_in_type_are_never_merged(one: dict[str, Any],
                                                                      other: dict[str, Any]) -> None:
    kept_one, kept_other = lean.compact(one), lean.compact(other)
    assert kept_one is not kept_other and lean.compact([one]) is not lean.compact([other])
    assert json.dumps(kept_other) == json.dumps(other) and json.dumps(kept_one) == json.dumps(one)


def test_a_value_of_another_type_is_kept_but_not_shared() -> None:
    odd = {"when": ("2026", "12"), "set": {1}}  # a set cannot even be part of a key
    assert lean.compact(odd) == odd and lean.compact(odd) is not lean.compact(odd)
    assert lean._SHARED == {}


def test_a_value_not_offered_is_not_stored() -> None:
    value = lean.compact({"type": "Complete", "status": "True"}, share=False)
    assert value == {"type": "Complete", "status": "True"}
    assert lean._SHARED == {}
    assert lean.compact({"type": "Complete", "status": "True"}) is not value


def test_a_resource_version_is_not_interned_but_a_name_is() -> None:
    version = "".join(["98765", "4321"])  # built at run time: a literal would be interned by the compiler
    name = "".join(["task-", "interned"])
    kept = lean.lean_task({"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}})
    assert kept["metadata"]["name"] is sys.intern("".join(["task-", "interned"]))
    assert kept["metadata"]["resourceVersion"] == version
    assert kept["metadata"]["resourceVersion"] is not sys.intern("".join(["98765", "4321"]))


def test_tls_connections_read_through_a_small_buffer() -> None:
    original = sslproto.SSLProtocol.max_size  # an operator or API run earlier in this process set it already
    try:
        small_tls_read_buffers(256 * 1024)  # asyncio's own size
        assert small_tls_read_buffers() == 256 * 1024  # the old size comes back
        loop = asyncio.new_event_loop()
        try:
            protocol = sslproto.SSLProtocol(loop, asyncio.Protocol(), ssl.create_default_context(), None,
                                            server_hostname="example")
            assert len(protocol._ssl_buffer) == TLS_READ_BUFFER_BYTES == 32 * 1024
        finally:
            loop.close()
        assert small_tls_read_buffers() == TLS_READ_BUFFER_BYTES  # a second call changes nothing
    finally:
        small_tls_read_buffers(original)


async def _fetch_over_tls(size: int, directory: Path) -> bytes:
    """``size`` bytes sent by a TLS server on localhost, read back by a TLS client."""
    authority = CertificateAuthority()
    cert, key = authority.server("localhost", ("127.0.0.1",)).write(directory, "server")
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(authority.pair.cert)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    body = bytes(range(256)) * (size // 256)

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=serving)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       ssl=ssl.create_default_context(cafile=str(ca_path)))
        received = await reader.read(-1)
        writer.close()
        return received if received == body else b""
    finally:
        server.close()
        await server.wait_closed()


def test_a_small_buffer_still_reads_an_answer_many_times_its_size(tmp_path: Path) -> None:
    """A LIST page of Pods is ~600 KB: it arrives whole through 32 KiB reads."""
    previous = small_tls_read_buffers()
    try:
        received = asyncio.run(_fetch_over_tls(2_000_000 // 256 * 256, tmp_path))
    finally:
        small_tls_read_buffers(previous)
    assert len(received) == 2_000_000 // 256 * 256


def test_the_readers_of_shared_values_leave_them_as_they_were() -> None:
    """One shared dict stands in many objects: status derivation and the REST views only read it."""
    from kubetask.core.rest.present import task_public, timeline
    from kubetask.core.status import observe_execution, reconcile_task, status_patch

    tasks = [lean.lean_task(renamed(OBJECTS["tasks"][1], i)) for i in range(3)]  # Running: a status to move
    jobs = [lean.lean_job(renamed(OBJECTS["jobs"][-1], i)) for i in range(3)]
    pods = [lean.lean_pod(renamed(OBJECTS["pods"][-1], i)) for i in range(3)]
    assert tasks[0]["spec"] is tasks[1]["spec"] and pods[0]["status"] is pods[1]["status"]
    before = json.dumps([tasks, jobs, pods, list(lean._SHARED.values())], sort_keys=True)
    now = datetime.datetime(2026, 12, 4, 12, tzinfo=datetime.UTC)
    for task, job, pod in zip(tasks, jobs, pods, strict=True):
        observation = observe_execution(job, [pod])
        assert observation.state == "succeeded"
        plan = reconcile_task(task, observation=observation, dependencies={}, now=now)
        assert plan.status["phase"] == "Succeeded"
        assert status_patch(task.get("status") or {}, plan.status)
        assert task_public(task)["status"] and timeline(task)["events"]
    assert json.dumps([tasks, jobs, pods, list(lean._SHARED.values())], sort_keys=True) == before
