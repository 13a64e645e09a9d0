"""The operator's worker limit: bounded by default (kopf's own default is no limit), set from env,
0 for no limit; and how long an idle worker keeps its slot."""

from __future__ import annotations

import pydantic
import pytest

from cryptopipe_operator.settings import OperatorConfig


def test_worker_limit_is_bounded_by_default_and_set_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorConfig().worker_limit == 20
    assert OperatorConfig().worker_idle_s == 0.5  # kopf's 5 s would hold each slot 5 s past its work
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_WORKER_LIMIT", "5")
    assert OperatorConfig().worker_limit == 5
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_WORKER_LIMIT", "0")  # no limit (kopf's None)
    assert OperatorConfig().worker_limit == 0
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_WORKER_LIMIT", "-1")
    with pytest.raises(pydantic.ValidationError):
        OperatorConfig()


def test_lease_needs_its_namespace_and_a_holder_that_stops_before_takeover(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorConfig().lease_name == ""  # no election unless configured (the chart does)
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_LEASE_NAME", "cryptopipe-operator")
    with pytest.raises(pydantic.ValidationError, match="LEASE_NAMESPACE"):
        OperatorConfig()
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_LEASE_NAMESPACE", "ops")
    assert OperatorConfig().lease_namespace == "ops"
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_LEASE_RENEW_DEADLINE_S", "20")
    with pytest.raises(pydantic.ValidationError, match="lease_renew_deadline_s < lease_duration_s"):
        OperatorConfig()
