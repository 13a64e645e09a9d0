"""`cryptopipe candles` starts in well under a second only if reading the lake does not pull in
pandas (about a second of imports on this machine): pyarrow.dataset imports it, pyarrow.parquet
does not. Checked in a fresh interpreter, by what is imported, never by how long it took."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = (
    "import json, sys, importlib; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(m for m in ('pandas', 'pyarrow.dataset', 'pyspark') if m in sys.modules)))"
)


@pytest.mark.parametrize("module", ["cryptopipe_dev.cli", "cryptopipe_dev.commands.candles", "cryptopipe.lake.reader"])
def test_the_candles_command_imports_no_pandas(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, env=dict(os.environ), check=True
    )
    assert json.loads(done.stdout) == []
