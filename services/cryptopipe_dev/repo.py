"""Where the dev harness finds the source checkout it runs from, and the shared folder beside it.

The harness is installed editable from a checkout (``pip install -e .[dev]``), so the repository is
two folders above this package; CRYPTOPIPE_REPO and CRYPTOPIPE_SHARED override both (CI lays
``shared/`` beside the clone, which is the default). Product code never uses this: what an image
needs ships inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("CRYPTOPIPE_REPO") or Path(__file__).resolve().parents[2])
SHARED = Path(os.environ.get("CRYPTOPIPE_SHARED") or REPO_ROOT.parent / "shared")
CHART = REPO_ROOT / "charts" / "cryptopipe-operator"
CRD_PATH = CHART / "crds" / "cryptopipelines.yaml"
UPSTREAM_CRDS = SHARED / "crds"
SPARK_JOB_MAIN = REPO_ROOT / "spark-apps" / "candles_job" / "main.py"
