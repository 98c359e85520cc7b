"""Creates the apiserver refused only for a moment are tried again at once; real refusals reach the caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubetask.core.cycle import CycleSettings
from kubetask.kube.client import PODS, ApiError
from kubetask.operator.scheduler import _create_retrying

QUOTA_REFUSAL = ('pods "small-266-1" is forbidden: exceeded quota: kubetask-quota, requested: '
                 'requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=20, limited: requests.nvidia.com/gpu=20')
BODY = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "small-266-1", "namespace": "kubetask-t"}}


class Answers:
    """A client whose creates fail with the given errors, in order, then succeed."""

    def __init__(self, *errors: ApiError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def create(self, resource: Any, body: dict[str, Any], namespace: str) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {**body, "metadata": {**body["metadata"], "uid": "u-1"}}


LAG_WAITS = (0.0, 0.0)  # as many retries as CycleSettings.quota_lag_retry_seconds, without the waiting


def test_the_lag_retries_are_the_core_s_two() -> None:
    assert len(CycleSettings().quota_lag_retry_seconds) == len(LAG_WAITS)


def test_a_refusal_on_the_admission_s_lagging_quota_is_created_on_the_next_try() -> None:
    client = Answers(ApiError(403, QUOTA_REFUSAL))
    retried: list[int] = []
    created = asyncio.run(_create_retrying(client, PODS, BODY, "kubetask-t", lag_waits=LAG_WAITS,
                                     on_quota_retry=lambda: retried.append(1)))
    assert created["metadata"]["uid"] == "u-1"
    assert client.calls == 2
    assert retried == [1]


def test_a_refusal_that_outlasts_the_retries_reaches_the_caller() -> None:
    client = Answers(*(ApiError(403, QUOTA_REFUSAL) for _ in range(3)))
    retried: list[int] = []
    with pytest.raises(ApiError) as refused:
        asyncio.run(_create_retrying(client, PODS, BODY, "kubetask-t", lag_waits=LAG_WAITS,
                                     on_quota_retry=lambda: retried.append(1)))
    assert "exceeded quota" in refused.value.message
    assert client.calls == 3  # the first try and the two lag retries
    assert len(retried) == 2


def test_other_refusals_are_not_tried_again() -> None:
    client = Answers(ApiError(403, 'pods "x" is forbidden: User "system:serviceaccount" cannot create'),
                     ApiError(403, QUOTA_REFUSAL))
    with pytest.raises(ApiError) as refused:
        asyncio.run(_create_retrying(client, PODS, BODY, "kubetask-t", lag_waits=LAG_WAITS))
    assert "cannot create" in refused.value.message
    assert client.calls == 1


def test_conflicts_and_quota_refusals_have_their_own_retries() -> None:
    client = Answers(ApiError(409, "the object has been modified"), ApiError(403, QUOTA_REFUSAL),
                     ApiError(409, "the object has been modified"))
    created = asyncio.run(_create_retrying(client, PODS, BODY, "kubetask-t", lag_waits=LAG_WAITS))
    assert created["metadata"]["name"] == "small-266-1"
    assert client.calls == 4


def test_an_existing_object_is_the_caller_s_to_settle() -> None:
    client = Answers(ApiError(409, {"reason": "AlreadyExists", "message": 'pods "small-266-1" already exists'}))
    with pytest.raises(ApiError) as exists:
        asyncio.run(_create_retrying(client, PODS, BODY, "kubetask-t", lag_waits=LAG_WAITS))
    assert exists.value.already_exists
    assert client.calls == 1
