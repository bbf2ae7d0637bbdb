"""Settings for every component, read from the environment and an optional YAML file.

Each component declares one settings model (subclass of `ComponentSettings`) with its own env
prefix, `CANARYFLOW_<COMPONENT>_`. A YAML file named by `CANARYFLOW_CONFIG` may hold a section per
component. Secrets (`SecretStr` fields) are refused in YAML: they come only from the environment or
from files (`<field>_file` pointing at a file, e.g. a mounted Kubernetes Secret), so that a config
file can be committed and shared, and `repr`/logs never show them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from canaryflow.kernel.guarded_input import InputRefused, parse_yaml, read_regular_file

CONFIG_ENV = "CANARYFLOW_CONFIG"


class SettingsError(ValueError):
    """A settings value is wrong; the message names the field and where it came from."""


def _is_secret(field: FieldInfo) -> bool:
    ann = field.annotation
    return ann is SecretStr or (getattr(ann, "__args__", None) is not None and SecretStr in ann.__args__)  # type: ignore[union-attr]


def _nested_secret(annotation: Any, value: Any, where: str) -> str | None:
    """The dotted path of a secret given inside a nested settings model (e.g. `controller.auth.tokens.
    ci.token`), looking through Optional, dict and list; None when there is none."""
    for kind in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(value, dict):
            for name, field in kind.model_fields.items():
                if name in value and (_is_secret(field) and value[name] is not None):
                    return f"{where}.{name}"
                if name in value and (
                    found := _nested_secret(field.annotation, value[name], f"{where}.{name}")
                ):
                    return found
        if getattr(kind, "__origin__", None) is dict and isinstance(value, dict):
            inner = kind.__args__[-1]
            for key, item in value.items():
                if found := _nested_secret(inner, item, f"{where}.{key}"):
                    return found
        if getattr(kind, "__origin__", None) is list and isinstance(value, list):
            for i, item in enumerate(value):
                if found := _nested_secret(kind.__args__[0], item, f"{where}[{i}]"):
                    return found
    return None


class _YamlSection(PydanticBaseSettingsSource):
    """The component's section of the YAML file named by CANARYFLOW_CONFIG, secrets refused."""

    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        self._data = self._load(section)

    def _load(self, section: str) -> dict[str, Any]:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return {}
        try:
            doc = parse_yaml(read_regular_file(path, what="YAML"), path) or {}
        except InputRefused as exc:
            raise SettingsError(f"{CONFIG_ENV}={exc}") from exc
        if not isinstance(doc, dict):
            raise SettingsError(f"{CONFIG_ENV}={path}: top level must be a mapping of components")
        data = doc.get(section) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"{CONFIG_ENV}={path}: section {section!r} must be a mapping")
        for name, field in self.settings_cls.model_fields.items():
            if name in data and _is_secret(field):
                raise SettingsError(
                    f"{CONFIG_ENV}={path}: {section}.{name} is a secret; set it through the "
                    f"environment or a file ({name}_file), never in the config file"
                )
            if name in data:
                nested = _nested_secret(field.annotation, data[name], f"{section}.{name}")
                if nested:
                    raise SettingsError(
                        f"{CONFIG_ENV}={path}: {nested} is a secret; set it through the environment "
                        f"(CANARYFLOW_{section.upper()}_{name.upper()}__...), never in the config file"
                    )
        return data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class ComponentSettings(BaseSettings):
    """Base of every component's settings: env prefix per component, YAML section, secret files."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.section:
            cls.model_config = {**cls.model_config, "env_prefix": f"CANARYFLOW_{cls.section.upper()}_"}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSection(settings_cls, cls.section))

    def model_post_init(self, context: Any) -> None:
        # `<secret>_file` settings: read the secret from a file when it was not given directly.
        for name, field in type(self).model_fields.items():
            if not _is_secret(field) or getattr(self, name) is not None:
                continue
            file_var = f"{self.model_config.get('env_prefix', '')}{name}_FILE".upper()
            path = os.environ.get(file_var)
            if path:
                try:
                    value = Path(path).read_text().strip()
                except OSError as exc:
                    raise SettingsError(f"{file_var}: cannot read secret file ({exc})") from exc
                object.__setattr__(self, name, SecretStr(value))
