"""OIDC login (authorization-code flow with PKCE, any issuer), one-time login links, logout.

`/auth/login` reads the issuer's discovery document, keeps state, nonce and the PKCE verifier in a
short-lived signed cookie and sends the browser to the issuer; `/auth/callback` checks the state,
exchanges the code with the verifier (Authlib's OAuth2 client), verifies the ID token's signature
against the issuer's JWKS and its `iss`, `aud`, `exp` and `nonce` claims (joserfc, Authlib's JOSE
library), and starts a session whose groups are the token's groups claim. `/auth/once?token=` turns a
single-use login link (the demo prints one) into a session.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from controller.auth.gate import identity_of
from controller.auth.identity import SESSION_COOKIE, Sessions
from controller.auth.settings import AuthSettings, OidcSettings

FLOW_COOKIE = "cf_oidc"
FLOW_TTL_S = 600


class Issuer:
    """The issuer's discovery document and keys, read once and again when a key id is unknown."""

    def __init__(self, settings: OidcSettings, timeout_s: float = 10.0) -> None:
        self.settings, self.timeout_s = settings, timeout_s
        self._meta: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._guard = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        with self._guard:
            if self._meta is None:
                url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                meta = httpx.get(url, timeout=self.timeout_s).raise_for_status().json()
                if meta.get("issuer") != self.settings.issuer:
                    raise ValueError(f"oidc.issuer: {url} names issuer {meta.get('issuer')!r}")
                self._meta = meta
            return self._meta

    def keys(self, refresh: bool = False) -> KeySet:
        with self._guard:
            if self._keys is None or refresh:
                uri = (self._meta or {}).get("jwks_uri")
                if not uri:
                    raise ValueError("oidc: the issuer's discovery document has no jwks_uri")
                self._keys = KeySet.import_key_set(
                    httpx.get(uri, timeout=self.timeout_s).raise_for_status().json()
                )
            return self._keys

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        meta = self.metadata()
        algorithms = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in algorithms if a != "none"]
        try:
            token = jwt.decode(id_token, self.keys(), algorithms=algorithms)
        except (JoseError, ValueError):  # a rotated key: read the JWKS again once
            token = jwt.decode(id_token, self.keys(refresh=True), algorithms=algorithms)
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            nonce={"essential": True, "value": nonce},
            exp={"essential": True},
            sub={"essential": True},
        )
        registry.validate(token.claims)
        return dict(token.claims)


def auth_routes(settings: AuthSettings, sessions: Sessions, issuer: Issuer | None) -> APIRouter:
    router = APIRouter(tags=["auth"])
    flows = URLSafeTimedSerializer(
        sessions._secret,
        salt="canaryflow-oidc-flow",
    )

    def client(request: Request) -> OAuth2Client:
        assert settings.oidc is not None
        oidc = settings.oidc
        secret = oidc.client_secret.get_secret_value() if oidc.client_secret else None
        redirect = oidc.redirect_url or str(request.base_url).rstrip("/") + "/auth/callback"
        return OAuth2Client(
            client_id=oidc.client_id,
            client_secret=secret,
            scope=" ".join(oidc.scopes),
            redirect_uri=redirect,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            timeout=10.0,
        )

    def set_session(response: Response, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=int(settings.session_ttl_s),
            httponly=True,
            secure=settings.cookie_secure,
            samesite="lax",
            path="/",
        )

    @router.get("/auth/login", response_model=None)
    def login(request: Request, next: str = "/console") -> Response:
        if issuer is None:
            return HTMLResponse(
                "<!doctype html><title>canaryflow</title><p>No OIDC issuer is configured "
                "(controller.auth.oidc): use the login link the operator gave you, the "
                "authenticating proxy, or an API token.</p>",
                status_code=401,
            )
        meta = issuer.metadata()
        verifier, nonce, state = (
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(16),
            secrets.token_urlsafe(16),
        )
        with client(request) as oauth:
            url, _ = oauth.create_authorization_url(
                meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        response = RedirectResponse(url, status_code=303)
        flow = flows.dumps({"s": state, "n": nonce, "v": verifier, "next": _local(next)})
        response.set_cookie(
            FLOW_COOKIE, flow, max_age=FLOW_TTL_S, httponly=True, secure=settings.cookie_secure,
            samesite="lax", path="/auth/",
        )  # fmt: skip
        return response

    @router.get("/auth/callback", response_model=None)
    def callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
        if issuer is None or settings.oidc is None:
            raise HTTPException(404, "OIDC login is off (controller.auth.oidc)")
        if error:
            raise HTTPException(401, f"the issuer refused the login: {error}")
        try:
            flow = flows.loads(request.cookies.get(FLOW_COOKIE, ""), max_age=FLOW_TTL_S)
        except BadSignature as exc:
            raise HTTPException(400, "login flow expired or missing: start again at /auth/login") from exc
        if not state or not secrets.compare_digest(state, flow["s"]):
            raise HTTPException(400, "state: does not match the login this browser started")
        meta = issuer.metadata()
        with client(request) as oauth:
            try:
                token = oauth.fetch_token(meta["token_endpoint"], code=code, code_verifier=flow["v"])
            except Exception as exc:  # the issuer's error (invalid_grant, ...) as one line
                raise HTTPException(401, f"code exchange refused: {exc}") from exc
        try:
            claims = issuer.verify(str(token.get("id_token", "")), flow["n"])
        except (JoseError, ValueError) as exc:
            raise HTTPException(401, f"ID token refused: {exc}") from exc
        oidc = settings.oidc
        user = str(claims.get(oidc.user_claim) or claims.get("email") or claims["sub"])
        raw = claims.get(oidc.groups_claim) or []
        groups = tuple(str(g) for g in (raw if isinstance(raw, list) else [raw]))
        response = RedirectResponse(flow["next"], status_code=303)
        set_session(response, sessions.issue(user, groups, "oidc"))
        response.delete_cookie(FLOW_COOKIE, path="/auth/")
        return response

    @router.get("/auth/once", response_model=None)
    def once(token: str = "", next: str = "/console") -> Response:
        found = sessions.redeem(token)
        if found is None:
            raise HTTPException(401, "login link invalid, expired or used already")
        user, groups = found
        response = RedirectResponse(_local(next), status_code=303)
        set_session(response, sessions.issue(user, groups, "link"))
        return response

    @router.post("/auth/logout", response_model=None)
    def logout() -> Response:
        response = RedirectResponse("/auth/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/auth/whoami")
    def whoami(request: Request) -> JSONResponse:
        me = identity_of(request)
        return JSONResponse(
            {
                "user": me.user,
                "groups": list(me.groups),
                "via": me.via,
                "roles": [g.model_dump(mode="json") for g in me.grants],
                "csrf_token": me.csrf,
                "expires_in_s": round(me.expires_at - time.time()) if me.expires_at else None,
            }
        )

    return router


def _local(target: str) -> str:
    """Only a path on this server: a login never redirects elsewhere (no open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/console"
    return target
