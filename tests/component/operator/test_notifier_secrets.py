"""The notifier's signing secrets: which subscriptions get one made by the operator.

Driven with a fake client (no cluster), like the scheduler's follow-ups: the race it guards against (the
operator's first delivery before the API has stored the secret it handed out) is a matter of ordering.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubetask.core.notifications import Ledger
from kubetask.kube.client import ApiError
from kubetask.operator.notify import Notifier, Subscription
from kubetask.operator.state import State
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

Obj = dict[str, Any]


class SecretsClient:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], Obj] = {}
        self.created: list[str] = []

    async def get_or_none(self, resource: Any, name: str, namespace: str | None = None) -> Obj | None:
        return self.secrets.get((str(namespace), name))

    async def create(self, resource: Any, body: Obj, namespace: str | None = None) -> Obj:
        key = (str(namespace), body["metadata"]["name"])
        if key in self.secrets:
            raise ApiError(409, {"reason": "AlreadyExists", "message": "exists"})
        self.secrets[key] = body
        self.created.append(key[1])
        return body


def notifier() -> tuple[Notifier, SecretsClient]:
    client = SecretsClient()
    state = State(OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0, leader_election=False),
                  GpuSettings(), KubeSettings(), client)  # type: ignore[arg-type]
    return Notifier(state), client


def hook(spec: Obj) -> Subscription:
    obj = {"metadata": {"name": "wh-1", "namespace": "kubetask-alice", "uid": "u1"}, "spec": spec}
    return Subscription(obj=obj, ledger=Ledger())


def test_a_subscription_made_through_the_api_waits_for_its_own_secret() -> None:
    async def run() -> None:
        notify, client = notifier()
        sub = hook({"url": "https://h.example.com", "secretRef": {"name": "wh-1-signing", "key": "secret"}})
        assert await notify._signing_secret(sub) is None  # the API has not stored it yet: nothing is made here
        assert client.created == []
        client.secrets[("kubetask-alice", "wh-1-signing")] = {
            "data": {"secret": base64.b64encode(b"handed-out").decode()}}
        assert await notify._signing_secret(sub) == "handed-out"  # a missing secret is not cached

    asyncio.run(run())


def test_a_subscription_that_names_no_secret_gets_one_made() -> None:
    async def run() -> None:
        notify, client = notifier()
        made = await notify._signing_secret(hook({"url": "https://h.example.com"}))
        assert made and client.created == ["wh-1-signing"]

    asyncio.run(run())
