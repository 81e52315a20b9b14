import pytest
from pydantic import ValidationError

from shared.kafka.config import consumer_config, producer_config
from shared.settings import PlatformSettings


def test_settings_come_from_mlops_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("MLOPS_NAMESPACE", "replay-1")
    monkeypatch.setenv("MLOPS_S3_SECRET_KEY", "very-secret")
    settings = PlatformSettings(_env_file=None)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.namespace == "replay-1"
    assert "very-secret" not in repr(settings)


def test_a_namespace_must_be_a_safe_topic_prefix() -> None:
    with pytest.raises(ValidationError, match="namespace"):
        PlatformSettings(_env_file=None, namespace="Bad Name!")


def test_sqlite_is_the_default_database() -> None:
    settings = PlatformSettings(_env_file=None, database_url=None)
    assert settings.database_url_or_sqlite("/tmp/x.db") == "sqlite:////tmp/x.db"


def test_producer_never_acknowledges_before_every_replica_has_the_write() -> None:
    config = producer_config(PlatformSettings(_env_file=None), "test")
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True


def test_consumer_stores_offsets_only_when_told() -> None:
    config = consumer_config(PlatformSettings(_env_file=None), "test", "group-1")
    assert config["enable.auto.offset.store"] is False
    assert config["group.id"] == "group-1"
