"""Which API failures the operator retries as transient (kopf.TemporaryError) and after how long;
the handlers' behaviour against the real API server is in tests/components/test_operator_errors.py."""

from __future__ import annotations

import aiohttp
import pytest

from cryptopipe_operator.kube_api import ApiError, transient_delay
from cryptopipe_operator.lake_cleanup import LakeCleanupError


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (409, True),
        (429, True),
        (500, True),
        (503, True),
        (504, True),
        (400, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_transient_statuses(status: int, transient: bool) -> None:
    error = ApiError("PATCH", "/apis/apps/v1/namespaces/ns/deployments/x", status, "{}")
    assert error.transient is transient
    assert transient_delay(error, 5.0) == (5.0 if transient else None)


def test_the_servers_retry_after_wins() -> None:
    assert transient_delay(ApiError("PATCH", "/x", 429, "{}", retry_after=4.0), 5.0) == 4.0
    # a Retry-After on a refusal that retrying cannot fix changes nothing
    assert transient_delay(ApiError("PATCH", "/x", 403, "{}", retry_after=4.0), 5.0) is None


def test_no_answer_is_transient_anything_else_is_not() -> None:
    assert transient_delay(aiohttp.ClientConnectionError("refused"), 5.0) == 5.0
    assert transient_delay(TimeoutError(), 5.0) == 5.0
    assert transient_delay(LakeCleanupError("objects left"), 5.0) is None
    assert transient_delay(KeyError("metadata"), 5.0) is None
