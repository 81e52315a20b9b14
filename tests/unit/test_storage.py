"""The MinIO clients: the readiness probe tries once, so /ready answers while MinIO is down."""

from __future__ import annotations

import socket
import threading

import pytest
from pydantic import SecretStr

from shared.settings import PlatformSettings
from shared.storage import object_store_reachable


@pytest.mark.parametrize("bucket", [None, "features"])
def test_a_probe_of_an_object_store_that_hangs_up_tries_once_and_fails(bucket: str | None) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    attempts: list[int] = []

    def hang_up() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            attempts.append(1)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    settings = PlatformSettings(
        s3_endpoint=f"127.0.0.1:{server.getsockname()[1]}",
        s3_access_key=SecretStr("key"),
        s3_secret_key=SecretStr("secret"),
        s3_secure=False,
    )
    try:
        with pytest.raises(Exception):  # noqa: B017 (whatever urllib3 raises for a hang-up)
            object_store_reachable(settings, bucket)()
    finally:
        server.close()
    assert attempts == [1]
