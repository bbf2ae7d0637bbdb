"""A policy's `serving:` section: which server a version's workload runs, and, for `custom`, the user's
own server as a template.

The profile names are one contract (`canaryflow.kernel.contracts.serving`); this module holds what a
policy may say about them. Built-in profiles take an optional `image` (pin the server's release) and
`extra_args` (tuning flags the server accepts: `--max-model-len`, ...); `kserve-runtime` names the
KServe `modelFormat` (and optionally the ServingRuntime); `custom` is a whole container template.

Templates use `${name}` placeholders (Python's `string.Template`; `$$` is a literal `$`), never
`$(name)`, which Kubernetes itself expands from the container's environment. The parameters are the
registered version's: `${model_name}`, `${model_version}`, `${model_uri}` (the artifact source the
registry records for the version, resolved when the manifests are rendered), `${model_dir}` (where the
artifacts are on the pod's disk) and `${port}`. A template naming anything else is refused when the
policy loads, and so is a `custom` server whose template never says which version to load.
"""

from __future__ import annotations

from string import Template

from pydantic import BaseModel, ConfigDict, Field, model_validator

from canaryflow.kernel.contracts.serving import DEFAULT_SERVING_PROFILE, ServingProfileName

TEMPLATE_PARAMETERS: tuple[str, ...] = ("model_name", "model_version", "model_uri", "model_dir", "port")
# A custom server must be told which version to serve: by where its files are, or by their URI.
VERSION_PARAMETERS: tuple[str, ...] = ("model_dir", "model_uri")
_PATH = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$"


def template_parameters(text: str, field: str) -> set[str]:
    """The parameters `text` names; a malformed placeholder or an unknown name is an error naming
    `field` and the parameters there are."""
    template = Template(text)
    if not template.is_valid():
        raise ValueError(f"{field}: {text!r} has a malformed placeholder (write ${{name}}, or $$ for $)")
    names = set(template.get_identifiers())
    unknown = sorted(names - set(TEMPLATE_PARAMETERS))
    if unknown:
        raise ValueError(
            f"{field}: unknown parameter ${{{unknown[0]}}} in {text!r} (parameters: "
            + ", ".join(f"${{{p}}}" for p in TEMPLATE_PARAMETERS)
            + ")"
        )
    return names


def expand(text: str, values: dict[str, str]) -> str:
    """`text` with its parameters replaced (validated when the policy loaded)."""
    return Template(text).substitute(values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomServer(_Strict):
    """The user's own inference server: one container, its port, probes and metrics endpoint."""

    image: str = Field(min_length=1, description="the server's image, pinned (a tag or a digest)")
    command: list[str] = Field(default_factory=list, description="empty: the image's entry point")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    port: int = Field(default=8080, ge=1, le=65535, description="where it serves HTTP")
    readiness_path: str = Field(default="/ready", pattern=_PATH)
    liveness_path: str = Field(default="/healthz", pattern=_PATH)
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="default: `port`")
    metrics_path: str = Field(default="/metrics", pattern=_PATH)
    start_timeout_s: int = Field(default=300, ge=10, le=7200, description="model load before liveness")
    resources: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="`requests`/`limits` as Kubernetes spells them; default: settings"
    )

    @model_validator(mode="after")
    def _templates(self) -> CustomServer:
        used: set[str] = set()
        for field, texts in (("command", self.command), ("args", self.args), ("env", self.env.values())):
            for text in texts:
                used |= template_parameters(text, field)
        if not used & set(VERSION_PARAMETERS):
            raise ValueError(
                "missing parameter: no command, args or env names ${model_dir} or "
                "${model_uri}, so the server would not know which version to load"
            )
        if self.metrics_port == self.port:
            raise ValueError("metrics_port: equals port; leave it out for the same port")
        unknown = sorted(set(self.resources) - {"requests", "limits"})
        if unknown:
            raise ValueError(f"resources: {unknown[0]!r} is not requests or limits")
        return self


class ServingConfig(_Strict):
    """Which server runs each version, and what the policy adds to its built-in rendering."""

    profile: ServingProfileName = DEFAULT_SERVING_PROFILE
    image: str | None = Field(default=None, min_length=1, description="built-in profiles: another image")
    extra_args: list[str] = Field(default_factory=list, description="appended to a built-in server's args")
    model_format: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9._-]*$", description="kserve-runtime: the modelFormat name"
    )
    model_format_version: str | None = Field(default=None, min_length=1)
    runtime: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="kserve-runtime: a runtime"
    )
    custom: CustomServer | None = None

    @model_validator(mode="after")
    def _fits_profile(self) -> ServingConfig:
        for text in self.extra_args:
            template_parameters(text, "extra_args")
        if self.profile == "custom":
            if self.custom is None:
                raise ValueError("custom: required by profile custom (image, args, port, probes)")
            if self.image is not None or self.extra_args:
                raise ValueError("image: a custom server names its image and args in custom")
        elif self.custom is not None:
            raise ValueError(f"custom: only for profile custom, not {self.profile}")
        if self.profile == "kserve-runtime":
            if self.model_format is None:
                raise ValueError("model_format: required by profile kserve-runtime (e.g. sklearn)")
        elif self.model_format or self.model_format_version or self.runtime:
            raise ValueError(f"model_format: only for profile kserve-runtime, not {self.profile}")
        if self.profile == "canaryflow" and (self.image is not None or self.extra_args):
            raise ValueError(
                "image: profile canaryflow runs the image of the gitops settings (gitops.render.image)"
            )
        return self
