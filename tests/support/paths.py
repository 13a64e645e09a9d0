"""Where the tests find the repository and the shared folder beside it.

One definition, the dev harness's (cryptopipe_dev.repo): the repository is the checkout the code
runs from, or CRYPTOPIPE_REPO; the shared folder (recordings, upstream CRDs) is CRYPTOPIPE_SHARED,
by default ``REPO/../shared`` as CI lays it.
"""

from __future__ import annotations

from cryptopipe_dev.repo import CHART, REPO_ROOT, SHARED, UPSTREAM_CRDS

REPO = REPO_ROOT
# recordings of the Coinbase feeds, and the fixtures of other Coinbase clients
COINBASE_DATA = SHARED / "data" / "coinbase"
# recordings cut down to a few minutes of BTC and ETH, in the replay server's JSONL
DERIVED_RECORDINGS = COINBASE_DATA / "derived"

__all__ = ["CHART", "COINBASE_DATA", "DERIVED_RECORDINGS", "REPO", "SHARED", "UPSTREAM_CRDS"]
