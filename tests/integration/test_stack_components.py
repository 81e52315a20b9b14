"""The stack's stores are the real servers: PostgreSQL and MinIO answer with the credentials
`make up` generated, and Jaeger's query API is up."""

from __future__ import annotations

import io
import uuid

import httpx
from minio import Minio
from sqlalchemy import create_engine, text

from shared.settings import PlatformSettings


def test_postgresql_answers_as_a_real_server(settings: PlatformSettings) -> None:
    assert settings.database_url, "MLOPS_DATABASE_URL is written by `make up`"
    engine = create_engine(settings.database_url.get_secret_value())
    with engine.connect() as connection:
        version = connection.execute(text("select version()")).scalar_one()
    assert version.startswith("PostgreSQL")


def test_minio_stores_and_returns_an_object(settings: PlatformSettings) -> None:
    assert settings.s3_access_key and settings.s3_secret_key
    client = Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
    )
    bucket = f"stack-test-{uuid.uuid4().hex[:12]}"
    client.make_bucket(bucket)
    try:
        body = b"model bytes"
        client.put_object(bucket, "artifact.bin", io.BytesIO(body), len(body))
        response = client.get_object(bucket, "artifact.bin")
        assert response.read() == body
        response.close()
        response.release_conn()
    finally:
        for item in client.list_objects(bucket, recursive=True):
            client.remove_object(bucket, item.object_name)
        client.remove_bucket(bucket)


def test_jaeger_query_api_answers(settings: PlatformSettings) -> None:
    response = httpx.get(f"{settings.jaeger_query_url}/api/services", timeout=10)
    assert response.status_code == 200
    assert "data" in response.json()
