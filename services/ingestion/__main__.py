"""python -m services.ingestion: the ingestion service on MLOPS_INGESTION_HOST:PORT (8001)."""

from __future__ import annotations

import logging

from services.ingestion.bootstrap import bootstrap
from shared.service import serve


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    service = bootstrap()
    # Kafka may be down: the service starts anyway (not ready, writes answer 503) and keeps
    # trying to register the shipped specs in the background.
    service.registration.start()
    serve(service.app, service.settings.host, service.settings.port)


if __name__ == "__main__":
    main()
