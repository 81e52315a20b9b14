"""MinIO: training sets read as Parquet, fitted pipelines stored and champions loaded as skops
artifacts (shared.artifacts: sha256 recorded, checked before every load)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from minio import Minio
from minio.error import MinioException
from urllib3.exceptions import HTTPError as TransportError

from services.training.adapters.errors import DependencyRefused, DependencyUnavailable
from shared.artifacts import load_model, split_uri, store_model
from shared.events.models import ArtifactRef


class ObjectStore:
    def __init__(self, client: Minio) -> None:
        self._client = client

    def read_parquet(self, uri: str) -> pd.DataFrame:
        try:
            bucket, key = split_uri(uri)
        except ValueError as error:
            raise DependencyRefused(f"training set location: {error}") from None
        data = self._read(bucket, key)
        try:
            return pd.read_parquet(io.BytesIO(data))
        except Exception as error:
            raise DependencyRefused(
                f"{uri} is not a readable Parquet file: {type(error).__name__}: {error}"
            ) from None

    def _read(self, bucket: str, key: str) -> bytes:
        try:
            response = self._client.get_object(bucket, key)
        except MinioException as error:
            raise DependencyRefused(f"s3://{bucket}/{key}: {error}") from None
        except TransportError as error:
            raise DependencyUnavailable(f"MinIO: {type(error).__name__}: {error}") from None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def store_model(self, model: Any, bucket: str, key: str) -> ArtifactRef:
        return store_model(self._client, model, bucket, key)

    def load_model(self, ref: ArtifactRef) -> Any:
        return load_model(self._client, ref)
