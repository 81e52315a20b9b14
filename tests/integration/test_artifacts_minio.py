"""Model artifacts in the real MinIO: stored with their sha256, refused when modified."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from minio import Minio
from sklearn.linear_model import LogisticRegression

from shared.artifacts import ArtifactRefused, load_model, split_uri, store_model
from shared.settings import PlatformSettings


@pytest.fixture
def minio(settings: PlatformSettings) -> Minio:
    assert settings.s3_access_key and settings.s3_secret_key, "make up writes the credentials"
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
    )


def test_a_stored_model_loads_and_a_modified_one_is_refused(minio: Minio) -> None:
    bucket = f"artifacts-{uuid.uuid4().hex[:12]}"
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    ref = store_model(minio, model, bucket, "loans/v1.skops")
    try:
        assert load_model(minio, ref).predict(np.array([[3.0]])).tolist() == [1]
        _, key = split_uri(ref.uri)
        tampered = b"\x00" * ref.size_bytes
        minio.put_object(bucket, key, io.BytesIO(tampered), len(tampered))
        with pytest.raises(ArtifactRefused, match="sha256 mismatch"):
            load_model(minio, ref)
    finally:
        for item in minio.list_objects(bucket, recursive=True):
            minio.remove_object(bucket, item.object_name)
        minio.remove_bucket(bucket)
