"""MinIO: the offline store's Parquet files, their write-ahead intents, and training sets."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from minio import Minio
from minio.error import S3Error


class ObjectStore:
    """One bucket, created if missing."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def ensure_bucket(self) -> None:
        if not self._client.bucket_exists(self.bucket):
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as error:
                if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put_parquet(self, key: str, table: pa.Table) -> int:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return self.put_bytes(key, buffer.getvalue(), "application/vnd.apache.parquet")

    def read_parquet(self, key: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.get_bytes(key)))

    def put_json(self, key: str, document: Any) -> None:
        self.put_bytes(key, json.dumps(document).encode(), "application/json")

    def get_json(self, key: str) -> Any | None:
        """The document, or None when there is no such object."""
        try:
            return json.loads(self.get_bytes(key))
        except S3Error as error:
            if error.code == "NoSuchKey":
                return None
            raise

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        self._client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
        )
        return len(data)

    def get_bytes(self, key: str) -> bytes:
        response = self._client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def keys(self, prefix: str) -> list[str]:
        """Every object key under a prefix, sorted."""
        objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
        return sorted(item.object_name for item in objects if item.object_name)
