"""kubetask.core.rest.errors: admission verdicts become REST errors through their reason code."""

from __future__ import annotations

import pytest

from kubetask.core.admission import HTTP_STATUS, Reason, Verdict
from kubetask.core.rest.errors import from_verdict


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_maps_to_its_status_and_code(reason: Reason) -> None:
    error = from_verdict(Verdict.deny(reason, "words that a person reads", "spec.timeoutSeconds"))
    assert error.status == HTTP_STATUS[reason] and error.code == reason.value
    assert error.detail == "words that a person reads" and error.field == "timeout_seconds"


def test_the_code_does_not_depend_on_the_words() -> None:
    # The old adapter searched the message for "month", "depend", "template" …: the reason decides now.
    error = from_verdict(Verdict.deny(Reason.QUOTA_EXCEEDED, "Monthly template dependency", "spec"))
    assert (error.status, error.code, error.field) == (403, "QUOTA_EXCEEDED", None)


def test_an_allowed_verdict_is_no_error() -> None:
    with pytest.raises(ValueError):
        from_verdict(Verdict())
