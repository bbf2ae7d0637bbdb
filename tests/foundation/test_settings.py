"""Settings come from env and a YAML file; secrets only from env or files and never show."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr

from canaryflow.kernel.component_settings import ComponentSettings, SettingsError


class DemoSettings(ComponentSettings):
    section: ClassVar[str] = "sample"
    port: int = 8080
    remote: str = "file:///tmp/gitops.git"
    token: SecretStr | None = None


def test_env_overrides_yaml_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "canaryflow.yaml"
    config.write_text("sample:\n  port: 9000\n  remote: /srv/gitops.git\nother:\n  port: 1\n")
    monkeypatch.setenv("CANARYFLOW_CONFIG", str(config))
    assert DemoSettings().port == 9000
    monkeypatch.setenv("CANARYFLOW_SAMPLE_PORT", "9100")
    settings = DemoSettings()
    assert (settings.port, settings.remote) == (9100, "/srv/gitops.git")


def test_secret_in_yaml_is_refused_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "canaryflow.yaml"
    config.write_text("sample:\n  token: hunter2\n")
    monkeypatch.setenv("CANARYFLOW_CONFIG", str(config))
    with pytest.raises(SettingsError, match=r"sample\.token is a secret"):
        DemoSettings()


def test_secret_from_env_or_file_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYFLOW_CONFIG", raising=False)
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t-from-file\n")
    monkeypatch.setenv("CANARYFLOW_SAMPLE_TOKEN_FILE", str(secret_file))
    settings = DemoSettings()
    assert settings.token is not None and settings.token.get_secret_value() == "s3cr3t-from-file"
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in settings.model_dump_json()

    monkeypatch.setenv("CANARYFLOW_SAMPLE_TOKEN", "from-env")
    assert DemoSettings().token.get_secret_value() == "from-env"  # type: ignore[union-attr]


def test_bad_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYFLOW_CONFIG", raising=False)
    monkeypatch.setenv("CANARYFLOW_SAMPLE_PORT", "eighty")
    with pytest.raises(ValueError, match="port"):
        DemoSettings()


def test_unreadable_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYFLOW_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match="cannot read YAML"):
        DemoSettings()


def test_secret_nested_in_yaml_is_refused_naming_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.controller_settings import ControllerSettings

    config = tmp_path / "canaryflow.yaml"
    config.write_text(
        "controller:\n  auth:\n    roles: [{subject: ops, role: operator}]\n"
        "    tokens:\n      ci: {token: abcdefghijklmnopqrstuvwx, role: operator}\n"
    )
    monkeypatch.setenv("CANARYFLOW_CONFIG", str(config))
    with pytest.raises(SettingsError, match=r"controller\.auth\.tokens\.ci\.token is a secret"):
        ControllerSettings()
    config.write_text("controller:\n  auth:\n    oidc: {issuer: 'https://id.example', client_id: cf}\n")
    monkeypatch.setenv("CANARYFLOW_CONTROLLER_AUTH__OIDC__CLIENT_SECRET", "from-the-environment")
    oidc = ControllerSettings().auth.oidc
    assert oidc is not None and oidc.client_secret is not None
    assert oidc.client_secret.get_secret_value() == "from-the-environment"
