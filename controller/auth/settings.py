"""Who may see and act on rollouts (`controller.auth`, env `CANARYFLOW_CONTROLLER_AUTH__*`).

Three ways in, each optional: OIDC login (authorization-code flow with PKCE against any issuer, the
`groups` claim mapped to roles), an authenticating proxy's identity headers (trusted only from the
configured proxy addresses), and API tokens for automation (the controller's `api_token` is one, with
the operator role on every model). Roles are granted per model pattern to groups or users; with no
grant nobody sees anything but `/healthz`, `/metrics` and the signed webhooks.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

Role = Literal["viewer", "operator"]
RANK: dict[str, int] = {"viewer": 1, "operator": 2}


class RoleGrant(BaseModel):
    """`subject` is a group name (from the OIDC groups claim or the proxy's groups header), or
    `user:<login>` for one person; `models` are fnmatch patterns of model names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1)
    role: Role = "viewer"
    models: tuple[str, ...] = ("*",)

    def covers(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class TokenGrant(BaseModel):
    """An API token for automation: its bearer acts as `token:<name>` with `role` on `models`."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr
    role: Role = "viewer"
    models: tuple[str, ...] = ("*",)

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("an API token must be at least 16 characters")
        return value


class OidcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="the issuer URL; its /.well-known/openid-configuration is read")
    client_id: str
    client_secret: SecretStr | None = Field(default=None, description="none: a public client (PKCE only)")
    scopes: tuple[str, ...] = ("openid", "profile", "email", "groups")
    groups_claim: str = "groups"
    user_claim: str = Field(default="preferred_username", description="falls back to email, then sub")
    redirect_url: str | None = Field(
        default=None,
        description="the callback as the browser reaches it; default: {request base}/auth/callback",
    )


class ProxySettings(BaseModel):
    """Identity headers set by an authenticating proxy (oauth2-proxy, an ingress with auth), believed
    only on connections from `trusted` addresses: anyone else sending them is ignored."""

    model_config = ConfigDict(extra="forbid")

    trusted: tuple[str, ...] = Field(min_length=1, description="proxy addresses or networks (CIDR)")
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"

    @field_validator("trusted")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # a ValueError names the bad one
        return value

    def trusts(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.trusted)


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    oidc: OidcSettings | None = None
    proxy: ProxySettings | None = None
    tokens: dict[str, TokenGrant] = Field(default_factory=dict, description="name -> API token (env: JSON)")
    roles: list[RoleGrant] = Field(default_factory=list)
    session_secret: SecretStr | None = Field(
        default=None, description="signs session cookies; unset: a random one (sessions end at restart)"
    )
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 86400.0)
    cookie_secure: bool = Field(default=True, description="Secure cookies (false only for http on loopback)")
