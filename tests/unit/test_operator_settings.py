"""The operator's worker limit: bounded by default (kopf's own default is no limit), set from env."""

from __future__ import annotations

import pydantic
import pytest

from cryptopipe_operator.settings import OperatorConfig


def test_worker_limit_is_bounded_by_default_and_set_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorConfig().worker_limit == 20
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_WORKER_LIMIT", "5")
    assert OperatorConfig().worker_limit == 5
    monkeypatch.setenv("CRYPTOPIPE_OPERATOR_WORKER_LIMIT", "0")
    with pytest.raises(pydantic.ValidationError):
        OperatorConfig()
