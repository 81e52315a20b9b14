"""The MinIO (S3) clients every service builds from the platform settings."""

from __future__ import annotations

import os
from collections.abc import Callable

import certifi
import urllib3
from minio import Minio

from shared.settings import PlatformSettings

# A readiness probe answers within seconds: one attempt, short timeouts. The data path's
# client keeps the library's retries with backoff, which would hold /ready for many seconds
# while MinIO is down.
PROBE_TIMEOUT = urllib3.Timeout(connect=1.0, read=2.0)


def minio_client(settings: PlatformSettings) -> Minio:
    """A client for MLOPS_S3_ENDPOINT; refuses to start without credentials."""
    return _client(settings, http_client=None)


def minio_probe(settings: PlatformSettings) -> Minio:
    """A client for readiness checks: no retry, answers (or fails) within about 3 s."""
    http_client = urllib3.PoolManager(
        timeout=PROBE_TIMEOUT,
        retries=urllib3.Retry(total=0),
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    return _client(settings, http_client=http_client)


def object_store_reachable(
    settings: PlatformSettings, bucket: str | None = None
) -> Callable[[], None]:
    """A readiness check: the object store answers (and holds `bucket`, when given) within
    about 3 s, or the check raises."""
    probe = minio_probe(settings)

    def check() -> None:
        if bucket is None:
            probe.list_buckets()
        elif not probe.bucket_exists(bucket):
            raise LookupError(f"bucket {bucket!r} does not exist")

    return check


def _client(settings: PlatformSettings, http_client: urllib3.PoolManager | None) -> Minio:
    if settings.s3_access_key is None or settings.s3_secret_key is None:
        raise ValueError(
            "MLOPS_S3_ACCESS_KEY and MLOPS_S3_SECRET_KEY are not set: the offline store, "
            "training sets and model artifacts live in MinIO (make up writes both to "
            ".local/stack.env)"
        )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        http_client=http_client,
    )
