"""``python -m cryptopipe.monitor``: the lake monitor service (what ``spec.monitor.enabled`` deploys),
configured from CRYPTOPIPE_MONITOR_* env. ``cryptopipe monitor serve`` in the dev CLI runs the same."""

from __future__ import annotations

import logging
import sys

from cryptopipe.logs import setup_logging
from cryptopipe.monitor.service import run
from cryptopipe.monitor.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        setup_logging("INFO")
        # a JSON line like every other log of the service (the Deployment's logs are JSON)
        logging.getLogger("cryptopipe.monitor").error("invalid settings", extra={"error": str(exc)})
        return 2
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
