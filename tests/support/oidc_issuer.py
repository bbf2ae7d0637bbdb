"""A real OpenID Connect issuer on loopback, built on Authlib's authorization server (Flask).

Authlib implements the protocol: the authorization-code grant, PKCE (`CodeChallenge`, required), the
OpenID `nonce` and the signed ID token; this file only supplies what every deployment supplies
itself: one client, a few users with their groups, an RSA signing key and a login form. So the
controller's login is tested against an issuer's real wire format, not a hand-written token check.

    with OidcIssuer(redirect_uri, users={"alice": ["ml-ops"]}) as issuer:
        issuer.url, issuer.client_id, issuer.client_secret
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.support.net import free_port

PASSWORD = "correct horse battery staple"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "profile", "email", "groups"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


class OidcIssuer:
    def __init__(self, redirect_uri: str, users: dict[str, list[str]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id, self.client_secret = "canaryflow-console", secrets.token_urlsafe(24)
        self.users = users
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"})
        self.client = Client(self.client_id, self.client_secret, redirect_uri)
        self.codes: dict[str, Code] = {}
        self.logins: list[str] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app = self._build()

    def _build(self) -> Flask:
        app = Flask("oidc-issuer")
        issuer, codes = self, self.codes

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                codes[code] = Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.scope,
                    user=req.user,
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                item = codes.get(code)
                return item if item is not None and item.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> str:
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in codes.values())

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return issuer.key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                return {"iss": issuer.url, "aud": [client.client_id], "exp": int(time.time()) + 300}

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "test-key-1"}

            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                return UserInfo(sub=f"sub-{user}", preferred_username=user, groups=issuer.users[user])

        server = AuthorizationServer(
            app,
            query_client=lambda cid: issuer.client if cid == issuer.client_id else None,
            save_token=lambda token, req: None,
        )
        server.register_grant(CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(
                issuer=issuer.url,
                authorization_endpoint=f"{issuer.url}/authorize",
                token_endpoint=f"{issuer.url}/token",
                jwks_uri=f"{issuer.url}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                code_challenge_methods_supported=["S256"],
                token_endpoint_auth_methods_supported=["client_secret_basic"],
            )

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(keys=[issuer.key.as_dict(private=False)])

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                server.get_consent_grant(end_user=None)  # refuses a bad request before any form
                hidden = "".join(
                    f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                    for k, v in request.args.items()
                )
                return (
                    "<!doctype html><title>Sign in</title><form method=post action=/authorize>"
                    f'{hidden}<label>user <input name="username" id="username"></label>'
                    '<label>password <input name="password" id="password" type="password"></label>'
                    '<button type="submit" id="sign-in">sign in</button></form>'
                )
            user = request.form.get("username", "")
            if user not in issuer.users or not secrets.compare_digest(
                request.form.get("password", ""), PASSWORD
            ):
                return "wrong user or password", 401
            issuer.logins.append(user)
            return server.create_authorization_response(grant_user=user)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        return app

    def __enter__(self) -> OidcIssuer:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-issuer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)
