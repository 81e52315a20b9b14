"""The MinIO (S3) client every service builds from the platform settings."""

from __future__ import annotations

from minio import Minio

from shared.settings import PlatformSettings


def minio_client(settings: PlatformSettings) -> Minio:
    """A client for MLOPS_S3_ENDPOINT; refuses to start without credentials."""
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
    )
