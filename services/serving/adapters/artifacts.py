"""Model artifacts from MinIO through shared.artifacts: sha256 checked, skops, no pickle."""

from __future__ import annotations

from typing import Any

from minio import Minio
from minio.error import S3Error

from shared.artifacts import ArtifactRefused, load_model
from shared.events.models import ArtifactRef
from shared.settings import PlatformSettings

MISSING = frozenset({"NoSuchKey", "NoSuchBucket"})


def minio_client(settings: PlatformSettings) -> Minio:
    access = settings.s3_access_key
    secret = settings.s3_secret_key
    return Minio(
        settings.s3_endpoint,
        access_key=access.get_secret_value() if access else None,
        secret_key=secret.get_secret_value() if secret else None,
        secure=settings.s3_secure,
    )


class ArtifactStore:
    def __init__(self, client: Minio) -> None:
        self._client = client

    def load(self, ref: ArtifactRef) -> Any:
        """The model of an artifact; ArtifactRefused when it is missing, tampered or unsafe.
        Other errors (MinIO unreachable) are worth retrying and propagate."""
        try:
            return load_model(self._client, ref)
        except S3Error as error:
            if error.code in MISSING:
                raise ArtifactRefused(f"artifact not found: {ref.uri} ({error.code})") from None
            raise
