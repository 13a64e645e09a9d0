"""The leader election's decisions (cryptopipe_operator.leader): when a Lease may be taken over,
and what is written to take, renew or release it."""

from __future__ import annotations

import pytest

from cryptopipe_operator.leader import LeaseClock, LeaseConfig, claim, owner_reference, released

CONFIG = LeaseConfig(namespace="ops", name="cryptopipe-operator", identity="pod-a_1", duration_s=15)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_expires_only_after_its_duration_without_change_on_our_own_clock() -> None:
    clock = FakeClock()
    lease_clock = LeaseClock(clock)
    held = {"holderIdentity": "pod-b_7", "renewTime": "2020-01-01T00:00:00.000000Z", "leaseDurationSeconds": 15}
    # the holder's renewTime is years old on our clock: irrelevant, only our observation counts
    assert not lease_clock.expired(held)
    clock.now += 14.9
    assert not lease_clock.expired(held)
    renewed = {**held, "renewTime": "2020-01-01T00:00:10.000000Z"}
    clock.now += 5
    assert not lease_clock.expired(renewed)  # a renewal restarts the wait
    clock.now += 15
    assert lease_clock.expired(renewed)
    assert LeaseClock(clock).expired({"holderIdentity": None})  # released


def test_claim_creates_renews_takes_over_or_waits() -> None:
    created = claim(None, CONFIG, expired=False)
    assert created is not None
    assert created["spec"]["holderIdentity"] == "pod-a_1"
    assert created["spec"]["leaseTransitions"] == 0

    theirs = {"metadata": {"resourceVersion": "5"}, "spec": {"holderIdentity": "pod-b_7", "leaseTransitions": 2}}
    assert claim(theirs, CONFIG, expired=False) is None
    taken = claim(theirs, CONFIG, expired=True)
    assert taken is not None
    assert taken["metadata"]["resourceVersion"] == "5"  # the replace is conditional on what was read
    assert taken["spec"]["holderIdentity"] == "pod-a_1"
    assert taken["spec"]["leaseTransitions"] == 3

    renewed = claim(taken, CONFIG, expired=False)
    assert renewed is not None
    assert renewed["spec"]["leaseTransitions"] == 3
    assert renewed["spec"]["acquireTime"] == taken["spec"]["acquireTime"]


def test_a_lease_is_made_owned_and_an_unowned_one_adopted_but_never_another_owners() -> None:
    role = {"metadata": {"name": "rel-cryptopipe-operator-leader-election", "uid": "u-1", "namespace": "ops"}}
    owner = owner_reference(role)
    assert owner == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "name": "rel-cryptopipe-operator-leader-election",
        "uid": "u-1",
    }
    created = claim(None, CONFIG, expired=False, owner=owner)
    assert created is not None and created["metadata"]["ownerReferences"] == [owner]
    assert "ownerReferences" not in (claim(None, CONFIG, expired=False) or {})["metadata"]
    # made by an operator that set no owner: adopted at the next renewal or takeover
    unowned = {
        "metadata": {"name": "cryptopipe-operator", "resourceVersion": "5"},
        "spec": {"holderIdentity": "pod-a_1"},
    }
    renewed = claim(unowned, CONFIG, expired=False, owner=owner)
    assert renewed is not None and renewed["metadata"]["ownerReferences"] == [owner]
    assert renewed["metadata"]["resourceVersion"] == "5"
    # owned by another release's Role (a shared Lease): left as it is
    other = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "name": "other", "uid": "u-2"}
    theirs = {**unowned, "metadata": {**unowned["metadata"], "ownerReferences": [other]}}
    renewed = claim(theirs, CONFIG, expired=False, owner=owner)
    assert renewed is not None and renewed["metadata"]["ownerReferences"] == [other]


def test_released_lease_has_no_holder() -> None:
    lease = claim(None, CONFIG, expired=False)
    assert lease is not None
    assert released(lease)["spec"]["holderIdentity"] is None


def test_lease_timing_must_leave_the_holder_time_to_stop() -> None:
    with pytest.raises(ValueError, match="renew_deadline_s < duration_s"):
        LeaseConfig(namespace="ops", name="x", identity="i", duration_s=10, renew_deadline_s=10)
