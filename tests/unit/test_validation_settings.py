import pytest

from services.validation.settings import ValidationSettings


def test_validation_listens_on_8002_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_VALIDATION_PORT", raising=False)
    assert ValidationSettings().port == 8002
    monkeypatch.setenv("MLOPS_VALIDATION_PORT", "18002")
    monkeypatch.setenv("MLOPS_VALIDATION_SPEC_REFRESH_SECONDS", "0.5")
    settings = ValidationSettings()
    assert (settings.port, settings.spec_refresh_seconds) == (18002, 0.5)
    assert settings.group_id is None, "defaults to <namespace>.validation"
