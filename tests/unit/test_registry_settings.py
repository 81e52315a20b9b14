"""The registry's settings: API keys from JSON, placeholders refused, database choice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.registry.settings import RegistrySettings
from shared.settings import PlatformSettings

GOOD_KEY = "0123456789abcdef0123"


def test_api_keys_come_from_json_and_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_REGISTRY_API_KEYS", f'{{"alice": "{GOOD_KEY}"}}')
    settings = RegistrySettings(_env_file=None)
    assert settings.api_keys["alice"].get_secret_value() == GOOD_KEY
    assert GOOD_KEY not in repr(settings)
    assert settings.port == 8005


@pytest.mark.parametrize(
    ("key", "complaint"),
    [("changeme", "placeholder"), ("CHANGEME-0123456789", "placeholder"), ("short", "16")],
)
def test_placeholder_and_short_keys_are_refused(key: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RegistrySettings(_env_file=None, api_keys={"alice": key})


def test_two_owners_cannot_share_a_key() -> None:
    with pytest.raises(ValidationError, match="share"):
        RegistrySettings(_env_file=None, api_keys={"alice": GOOD_KEY, "bob": GOOD_KEY})


def test_the_policy_is_not_an_owner_name() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        RegistrySettings(_env_file=None, api_keys={"policy": GOOD_KEY})


def test_a_negative_promotion_margin_is_refused() -> None:
    with pytest.raises(ValidationError, match="promotion_margin"):
        RegistrySettings(_env_file=None, promotion_margin=-0.01)


def test_the_registry_database_overrides_the_platform_one() -> None:
    platform = PlatformSettings(_env_file=None, database_url="postgresql+psycopg://x@h/db")
    own = RegistrySettings(_env_file=None, database_url="sqlite:////tmp/registry.sqlite")
    assert own.database_url_for(platform) == "sqlite:////tmp/registry.sqlite"
    shared = RegistrySettings(_env_file=None)
    assert shared.database_url_for(platform) == "postgresql+psycopg://x@h/db"


def test_sqlite_is_the_default_without_any_database_url() -> None:
    platform = PlatformSettings(_env_file=None, database_url=None)
    settings = RegistrySettings(_env_file=None, sqlite_path="/tmp/r.sqlite")
    assert settings.database_url_for(platform) == "sqlite:////tmp/r.sqlite"
