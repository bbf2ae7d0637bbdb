"""OIDC login against a real issuer on loopback (Authlib's server): code flow, PKCE, groups -> roles."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.auth.settings import AuthSettings, OidcSettings, RoleGrant
from controller.console.routes import mount
from controller.controller_settings import ControllerSettings
from controller.observability import ControllerMetrics
from controller.rollout.store import RolloutStore
from tests.support.oidc_issuer import PASSWORD, OidcIssuer

CALLBACK = "https://testserver/auth/callback"


@pytest.fixture
def issuer():
    with OidcIssuer(CALLBACK, users={"alice": ["ml-ops", "staff"], "mallory": ["staff"]}) as running:
        yield running


@pytest.fixture
def console(tmp_path, issuer):
    auth = AuthSettings(
        oidc=OidcSettings(
            issuer=issuer.url,
            client_id=issuer.client_id,
            client_secret=SecretStr(issuer.client_secret),
            redirect_url=CALLBACK,
        ),
        roles=[RoleGrant(subject="ml-ops", role="operator")],
    )
    settings = ControllerSettings(db_path=tmp_path / "c.db", auth=auth)
    store = RolloutStore(settings.db_path)
    ctx = ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store))
    app = create_app(ctx)
    mount(app, ctx, None)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def sign_in(console: TestClient, user: str, password: str = PASSWORD) -> Any:
    """The browser's part: to the issuer, its login form, back to the callback."""
    start = console.get("/auth/login", params={"next": "/console/api/rollouts"})
    assert start.status_code == 303
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0] and query["nonce"][0]
    form = httpx.get(authorize)
    assert form.status_code == 200 and 'name="username"' in form.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
    back = httpx.post(authorize.split("?")[0], data={**fields, "username": user, "password": password})
    if back.status_code != 302:
        return back
    assert back.headers["location"].startswith(CALLBACK)
    return console.get(back.headers["location"].removeprefix("https://testserver"))


def test_an_operator_logs_in_with_the_code_flow_and_pkce(console, issuer):
    done = sign_in(console, "alice")
    assert done.status_code == 303 and done.headers["location"] == "/console/api/rollouts"
    me = console.get("/auth/whoami").json()
    assert me["user"] == "alice" and me["groups"] == ["ml-ops", "staff"] and me["via"] == "oidc"
    assert me["roles"] == [{"subject": "ml-ops", "role": "operator", "models": ["*"]}]
    assert console.get("/console/api/rollouts").status_code == 200
    assert issuer.logins == ["alice"]


def test_a_person_without_a_granted_group_sees_nothing(console):
    assert sign_in(console, "mallory").status_code == 303  # logged in ...
    refused = console.get("/console/api/rollouts")
    assert refused.status_code == 403 and "no role" in refused.json()["detail"]  # ... but no role


def test_a_forged_state_or_an_old_callback_is_refused(console):
    start = console.get("/auth/login")
    authorize = start.headers["location"]
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', httpx.get(authorize).text))
    back = httpx.post(authorize.split("?")[0], data={**fields, "username": "alice", "password": PASSWORD})
    callback = back.headers["location"].removeprefix("https://testserver")
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    assert console.get(forged).status_code == 400
    assert console.get(callback).status_code == 303
    console.cookies.clear()
    console.get("/auth/login")  # a new flow; the old code was used up at the issuer
    assert console.get(callback).status_code == 400  # its state belongs to the earlier flow
