"""Model artifacts: skops files in MinIO, checked by sha256 before every load.

Loading never unpickles: skops rebuilds objects from a declared schema and refuses any type
it does not trust. The types it may trust beyond its own defaults come from a fixed
platform allowlist (scikit-learn and numpy internals), never from the artifact or the
registry, so a tampered record cannot widen what gets loaded.
"""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any

import skops.io as sio
from minio import Minio

from shared.events.models import ArtifactRef

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")


class ArtifactRefused(Exception):
    """An artifact that must not be loaded: tampered, unreadable, or with untrusted types."""


def serialize(model: Any) -> tuple[bytes, list[str]]:
    """The skops bytes of a model and the types skops will ask to be trusted on load."""
    data = sio.dumps(model)
    untrusted = sio.get_untrusted_types(data=data)
    refused = [name for name in untrusted if not name.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ArtifactRefused(f"model holds types outside the allowlist: {refused}")
    return data, untrusted


_ONE_LOAD_AT_A_TIME = threading.Lock()
"""skops reads each array with numpy's header parser (ast.literal_eval), and CPython 3.11's AST
constructor keeps its recursion depth per process, not per thread: two loads at once on two
threads (serving's load pool) can fail with "SystemError: AST constructor recursion depth
mismatch", a good artifact then refused. Loads hold the GIL for most of their time anyway."""


def deserialize(data: bytes, expected_sha256: str) -> Any:
    """The model in `data`, only if its hash matches and every type it needs is allowed."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactRefused(f"sha256 mismatch: expected {expected_sha256}, got {actual}")
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as error:
        raise ArtifactRefused(f"not a skops artifact: {type(error).__name__}: {error}") from None
    refused = [name for name in untrusted if not name.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ArtifactRefused(f"artifact asks to trust types outside the allowlist: {refused}")
    try:
        with _ONE_LOAD_AT_A_TIME:
            return sio.loads(data, trusted=untrusted)
    except Exception as error:
        raise ArtifactRefused(f"unloadable artifact: {type(error).__name__}: {error}") from None


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key uri: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def store_model(client: Minio, model: Any, bucket: str, key: str) -> ArtifactRef:
    data, untrusted = serialize(model)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/zip")
    return ArtifactRef(
        uri=f"s3://{bucket}/{key}",
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        trusted_types=untrusted,
    )


def load_model(client: Minio, ref: ArtifactRef) -> Any:
    bucket, key = split_uri(ref.uri)
    response = client.get_object(bucket, key)
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    return deserialize(data, ref.sha256)
