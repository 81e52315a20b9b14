"""Model artifacts from MinIO through shared.artifacts: sha256 checked, skops, no pickle."""

from __future__ import annotations

from typing import Any

from minio import Minio
from minio.error import S3Error

from shared.artifacts import ArtifactRefused, load_model
from shared.events.models import ArtifactRef

MISSING = frozenset({"NoSuchKey", "NoSuchBucket"})


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
