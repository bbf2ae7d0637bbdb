"""The door every request passes: who is it, may they be here, and is a change really theirs (CSRF).

Only `/healthz`, `/metrics`, the signed webhooks and the login routes are open. Anything else needs an
identity with a role on at least one model: a browser without one is sent to the login, an API
caller gets 401. Per-model checks (may this person see or act on *this* rollout) are the routes' own,
through `require`. A change (POST, PUT, PATCH, DELETE) made with ambient credentials (a session
cookie, a proxy's headers) must carry the person's CSRF token in `X-CSRF-Token` or a form field
`csrf_token`; a bearer token cannot be sent by another site, so it needs none.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from controller.auth.identity import SESSION_COOKIE, Identity, Sessions
from controller.auth.settings import AuthSettings, RoleGrant

OPEN_PATHS = frozenset({"/healthz", "/metrics", "/auth/login", "/auth/callback", "/auth/once"})
OPEN_PREFIXES = ("/webhooks/",)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Gate:
    def __init__(
        self,
        settings: AuthSettings,
        sessions: Sessions,
        api_token: str | None = None,
        model_of: Callable[[str], str | None] = lambda path: None,
    ) -> None:
        """`model_of(path)`: the model a path is about (a rollout's, a model page's), so that every
        route, whoever wrote it, is checked per model: viewer to read, operator to change."""
        self.settings, self.sessions, self.model_of = settings, sessions, model_of
        self._tokens: list[tuple[bytes, str, RoleGrant]] = [
            (
                grant.token.get_secret_value().encode(),
                name,
                RoleGrant(subject=f"token:{name}", role=grant.role, models=grant.models),
            )
            for name, grant in settings.tokens.items()
        ]
        if api_token:  # CANARYFLOW_CONTROLLER_API_TOKEN: automation with the operator role everywhere
            self._tokens.append((api_token.encode(), "api", RoleGrant(subject="token:api", role="operator")))

    def identify(self, request: Request) -> Identity | None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            presented = given.strip().encode()
            for secret, name, grant in self._tokens:
                if hmac.compare_digest(presented, secret):
                    return Identity(user=f"token:{name}", via="token", grants=(grant,))
            return None  # a wrong token is not silently replaced by a cookie
        proxy = self.settings.proxy
        client = request.client.host if request.client else None
        if proxy is not None and proxy.trusts(client):
            user = request.headers.get(proxy.user_header, "").strip()
            if user:
                raw = request.headers.get(proxy.groups_header, "")
                groups = tuple(g.strip() for g in raw.split(",") if g.strip())
                return Identity(
                    user=user,
                    groups=groups,
                    via="proxy",
                    grants=self.sessions.grants_for(user, groups),
                    csrf=self.sessions.proxy_csrf(user),
                )
        return self.sessions.read(request.cookies.get(SESSION_COOKIE))

    async def csrf_ok(self, request: Request, identity: Identity) -> bool:
        if identity.via == "token":
            return True
        given = request.headers.get(CSRF_HEADER, "")
        content_type = request.headers.get("content-type", "")
        if not given and content_type.startswith("application/x-www-form-urlencoded"):
            given = (await form_of(request)).get(CSRF_FIELD, "")
        return bool(identity.csrf) and hmac.compare_digest(given.encode(), identity.csrf.encode())

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def authenticate(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            if is_open(request.url.path):
                return await call_next(request)
            identity = self.identify(request)
            if identity is None:
                return _unauthenticated(request)
            if identity.role_anywhere is None:
                return JSONResponse(
                    {"detail": f"{identity.user} has no role on any model (groups: "
                               f"{', '.join(identity.groups) or 'none'})"},
                    status_code=403,
                )  # fmt: skip
            if request.method in UNSAFE and not await self.csrf_ok(request, identity):
                return JSONResponse(
                    {"detail": f"CSRF: a change needs the {CSRF_HEADER} header (or form field {CSRF_FIELD})"},
                    status_code=403,
                )
            model = self.model_of(request.url.path)
            needed = "operator" if request.method in UNSAFE else "viewer"
            if model is not None and not identity.can(model, needed):
                return JSONResponse(
                    {"detail": f"{identity.user} has no {needed} role on model {model!r}"}, 403
                )
            request.state.identity = identity
            return await call_next(request)


async def form_of(request: Request, limit: int = 64_000) -> dict[str, str]:
    """A small urlencoded form (the console's buttons): the body is cached, so the route reads it too."""
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"form larger than {limit} bytes")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _unauthenticated(request: Request) -> Response:
    wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
    if wants_page:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/auth/login?next={quote(target, safe='')}", status_code=303)
    return JSONResponse(
        {"detail": "authentication required: log in, or send Authorization: Bearer <API token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def identity_of(request: Request) -> Identity:
    identity = getattr(request.state, "identity", None)
    if identity is None:  # only reachable on an app without the gate: refuse rather than guess
        raise HTTPException(401, "authentication required")
    assert isinstance(identity, Identity)
    return identity


def require(request: Request, model: str, role: str) -> Identity:
    """The caller, if they hold `role` on `model`; else 403 naming what is missing."""
    identity = identity_of(request)
    if not identity.can(model, role):
        raise HTTPException(403, f"{identity.user} has no {role} role on model {model!r}")
    return identity
