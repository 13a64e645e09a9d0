"""When a failed reconcile is tried again, and how its failure is told (pure).

A reconcile that fails for a reason retrying may or may not fix (a child the API server refuses:
a quota, an admission policy, RBAC; the API server unavailable) is retried with exponential
backoff: ``base``, twice that, four times... up to ``cap``, counted per pipeline by kopf's
``retry`` (the attempts of this handler for this change; a new spec starts again at ``base``).
A server that said when to come back (Retry-After) is not asked sooner.
"""

from __future__ import annotations

import json

from cryptopipe_operator.kube_api import ApiError


def backoff_delay(retry: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before attempt ``retry + 1`` (``retry``: failed attempts so far, 0 after the first)."""
    exponential = base * 2.0 ** min(retry, 32)  # min: no float overflow after very many attempts
    return max(min(exponential, cap), retry_after or 0.0)


class StepFailed(RuntimeError):
    """A reconcile step that failed, named (``applying Deployment/btc-ingestion``), with its cause."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        super().__init__(f"{step}: {describe(cause)}")
        self.__cause__ = cause


def root_cause(exc: BaseException) -> BaseException:
    return exc.__cause__ if isinstance(exc, StepFailed) and exc.__cause__ is not None else exc


def describe(exc: BaseException) -> str:
    """One line for a condition's message and an Event: for the API server's refusal its HTTP code
    and the message of its Status (``exceeded quota: ...``, ``... is forbidden: ...``), not the
    whole response body; for anything else its type and text."""
    if isinstance(exc, StepFailed):
        return str(exc)
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status}: {_status_message(exc.body)}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _status_message(body: str) -> str:
    try:
        status = json.loads(body)
    except ValueError:
        return body[:300] or "no message"
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else body[:300]
