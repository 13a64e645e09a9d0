"""``python -m cryptopipe.ingest``: run the ingestion service, configured from CRYPTOPIPE_INGEST_* env."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from cryptopipe.ingest.service import run
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.logs import setup_logging


def main() -> int:
    try:
        settings = IngestSettings()
    except ValidationError as exc:
        setup_logging("INFO")
        logging.getLogger("cryptopipe.ingest").error(
            "invalid settings", extra={"errors": [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]}
        )
        return 2
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
