import hashlib
import io
import pickle
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from shared import artifacts
from shared.artifacts import ArtifactRefused, deserialize, serialize, split_uri


class WritesAMarker:
    """Unpickling this would create a file: the proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.path, "pwned"))


def a_model() -> LogisticRegression:
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    return LogisticRegression().fit(features, [0, 0, 1, 1])


def test_a_model_round_trips_when_its_hash_matches() -> None:
    data, _ = serialize(a_model())
    loaded = deserialize(data, hashlib.sha256(data).hexdigest())
    assert loaded.predict(np.array([[0.1], [2.9]])).tolist() == [0, 1]


def test_a_modified_artifact_is_refused_before_it_is_read() -> None:
    data, _ = serialize(a_model())
    expected = hashlib.sha256(data).hexdigest()
    with pytest.raises(ArtifactRefused, match="sha256 mismatch"):
        deserialize(data + b"\x00", expected)


def test_a_pickle_payload_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(WritesAMarker(marker))
    with pytest.raises(ArtifactRefused, match="not a skops artifact"):
        deserialize(payload, hashlib.sha256(payload).hexdigest())
    assert not marker.exists()


def test_a_pickle_hidden_inside_a_zip_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", '{"__class__": "dict", "__module__": "builtins"}')
        archive.writestr("model.pkl", pickle.dumps(WritesAMarker(marker)))
    data = buffer.getvalue()
    with pytest.raises(ArtifactRefused):
        deserialize(data, hashlib.sha256(data).hexdigest())
    assert not marker.exists()


def test_uris_name_a_bucket_and_a_key() -> None:
    assert split_uri("s3://models/loans/v1.skops") == ("models", "loans/v1.skops")
    with pytest.raises(ValueError, match="not an s3"):
        split_uri("/tmp/model.pkl")


def test_loads_on_many_threads_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython 3.11's AST constructor (numpy's header parser under skops) is not thread-safe:
    concurrent loads fail with SystemError, so the loads are serialized."""
    data, _ = serialize(a_model())
    digest = hashlib.sha256(data).hexdigest()
    inside, most = 0, 0
    guard = threading.Lock()
    real_loads = artifacts.sio.loads

    def counted_loads(*args: object, **kwargs: object) -> object:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        time.sleep(0.01)
        try:
            return real_loads(*args, **kwargs)
        finally:
            with guard:
                inside -= 1

    monkeypatch.setattr(artifacts.sio, "loads", counted_loads)
    with ThreadPoolExecutor(8) as pool:
        loaded = list(pool.map(lambda _: deserialize(data, digest), range(16)))

    assert len(loaded) == 16
    assert most == 1
