"""Who is calling, and what each role lets them do on which model.

An identity comes from a session cookie (signed with `itsdangerous`, expiring after the session TTL,
made at OIDC login or by a one-time login link), from a trusted proxy's headers, or from an API
token. Its roles are the grants of `controller.auth.roles` whose subject is one of its groups or
`user:<login>` (a token carries its own grant). `operator` includes `viewer`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from controller.auth.settings import RANK, AuthSettings, RoleGrant

Via = Literal["oidc", "proxy", "token", "link"]
SESSION_COOKIE = "cf_session"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    via: Via = "oidc"
    grants: tuple[RoleGrant, ...] = ()
    csrf: str = field(default="", repr=False)
    expires_at: float | None = None

    def rank(self, model: str) -> int:
        """1 viewer, 2 operator, 0 nothing on `model`."""
        return max((RANK[g.role] for g in self.grants if g.covers(model)), default=0)

    def can(self, model: str, role: str) -> bool:
        return self.rank(model) >= RANK[role]

    @property
    def role_anywhere(self) -> str | None:
        best = max((RANK[g.role] for g in self.grants), default=0)
        return next((role for role, rank in RANK.items() if rank == best), None)


class Sessions:
    """Signed, expiring session cookies and single-use login links, from one secret."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        secret = settings.session_secret.get_secret_value() if settings.session_secret else None
        self._secret = secret or secrets.token_urlsafe(32)
        self._cookies = URLSafeTimedSerializer(self._secret, salt="canaryflow-session")
        self._links = URLSafeTimedSerializer(self._secret, salt="canaryflow-login-link")
        self._used: dict[str, float] = {}
        self._guard = threading.Lock()

    def grants_for(self, user: str, groups: tuple[str, ...]) -> tuple[RoleGrant, ...]:
        subjects = {*groups, f"user:{user}"}
        return tuple(g for g in self.settings.roles if g.subject in subjects)

    # -- session cookies ---------------------------------------------------------------------------
    def issue(self, user: str, groups: tuple[str, ...], via: Via) -> str:
        """The cookie value of a new session (a fresh CSRF token in it)."""
        expires = time.time() + self.settings.session_ttl_s
        payload = {"u": user, "g": list(groups), "v": via, "c": secrets.token_urlsafe(24), "e": expires}
        return self._cookies.dumps(payload)

    def read(self, cookie: str | None) -> Identity | None:
        if not cookie:
            return None
        try:
            data: dict[str, Any] = self._cookies.loads(cookie, max_age=int(self.settings.session_ttl_s))
        except (BadSignature, SignatureExpired):
            return None
        if float(data.get("e", 0)) < time.time():
            return None
        groups = tuple(str(g) for g in data.get("g", []))
        user = str(data["u"])
        return Identity(
            user=user,
            groups=groups,
            via=data.get("v", "oidc"),
            grants=self.grants_for(user, groups),
            csrf=str(data["c"]),
            expires_at=float(data["e"]),
        )

    def proxy_csrf(self, user: str) -> str:
        """A proxy-authenticated person has no session of ours: their CSRF token is derived instead."""
        return hmac.new(self._secret.encode(), f"csrf:proxy:{user}".encode(), hashlib.sha256).hexdigest()

    # -- single-use login links (the demo's) -------------------------------------------------------
    def login_link_token(self, user: str, groups: tuple[str, ...] = (), ttl_s: float = 900.0) -> str:
        return self._links.dumps({"u": user, "g": list(groups), "n": secrets.token_urlsafe(16), "t": ttl_s})

    def redeem(self, token: str) -> tuple[str, tuple[str, ...]] | None:
        """(user, groups) of a valid login link not used before; None otherwise (it is used up)."""
        try:
            data: dict[str, Any] = self._links.loads(token, max_age=86400)
            self._links.loads(token, max_age=int(data["t"]))
        except (BadSignature, SignatureExpired, KeyError, ValueError):
            return None
        now = time.time()
        with self._guard:
            self._used = {n: t for n, t in self._used.items() if t > now}
            if data["n"] in self._used:
                return None
            self._used[data["n"]] = now + float(data["t"])
        return str(data["u"]), tuple(str(g) for g in data["g"])
