"""AdmissionIndex read by the admission thread while the operator's loop updates it (kubetask.operator.indexes)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kubetask.operator.indexes import AdmissionIndex

NAMESPACES = [f"ns-{i}" for i in range(40)]


def _task(namespace: str, name: str, phase: str = "Pending", deps: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name},
            "spec": {"user": "alice", **({"dependsOn": list(deps)} if deps else {})}, "status": {"phase": phase}}


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads change hands every microsecond, so the two sides really interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_counts_stay_exact_while_reviews_read_and_remember_from_another_thread(fast_switching: None) -> None:
    index = AdmissionIndex()
    errors: list[BaseException] = []
    done = threading.Event()
    rounds = 300

    def operator_loop() -> None:
        try:
            for round_ in range(rounds):
                for namespace in NAMESPACES:  # each round adds one waiting task per namespace, then runs it
                    index.on_task(None, _task(namespace, f"t{round_}"))
                for namespace in NAMESPACES:
                    index.on_task(_task(namespace, f"t{round_}"), _task(namespace, f"t{round_}", "Running"))
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    seen: list[int] = []
    remembered_reviews: list[str] = []

    def admission_thread() -> None:
        try:
            n = 0
            while not done.is_set():
                seen.append(index.pending_count("alice", namespaces_of=lambda _: (),
                                                tenant_of_namespace=lambda _: None))
                index.remember_admitted(("reviews", f"r{n}"), "bob", ["x"])
                remembered_reviews.append(f"r{n}")
                n += 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=operator_loop), threading.Thread(target=admission_thread)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert seen and max(seen) <= len(NAMESPACES)  # never more waiting than one round adds
    assert index.pending_count("alice", namespaces_of=lambda _: (), tenant_of_namespace=lambda _: None) == 0
    # every review admitted within the last 30 s still counts, until its watch event comes
    assert index.pending_count("bob", namespaces_of=lambda _: (), tenant_of_namespace=lambda _: None) \
        == len(remembered_reviews) > 0
    assert "t0" in index.graph("ns-7") and index.graph("ns-7")["t0"] == ()


def test_a_dependency_lookup_sees_only_the_namespace_it_asks() -> None:
    index = AdmissionIndex()
    index.on_task(None, _task("a", "base"))
    index.on_task(None, _task("a", "child", deps=("base",)))
    index.remember_admitted(("a", "fresh"), "alice", ["child"])
    graph = index.graph("a")
    assert graph["child"] == ("base",) and graph["fresh"] == ("child",)
    assert "base" not in index.graph("b")
    assert graph.get("missing") is None
