"""The gate in front of the controller: every route refused to the unauthenticated and the wrong role.

The routes are enumerated from the app itself, so a route added later is checked without anyone
remembering to list it here.
"""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from controller.actions import RolloutActions
from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.auth.identity import SESSION_COOKIE
from controller.auth.settings import AuthSettings, ProxySettings, RoleGrant, TokenGrant
from controller.console.routes import mount
from controller.observability import ControllerMetrics
from controller.rollout.actions import ActionStore
from controller.rollout.records import RolloutRecord
from tests.controller.harness import Steps, make, policy

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"
STRANGER = "stranger-token-0123456789"  # a viewer of other models only
API = "legacy-api-token-0123456789"
OPEN = {"/healthz", "/metrics", "/auth/login", "/auth/callback", "/auth/once"}


def auth_settings(**extra) -> AuthSettings:
    return AuthSettings(
        tokens={
            "ops": TokenGrant(token=SecretStr(OPERATOR), role="operator", models=("minilm",)),
            "watch": TokenGrant(token=SecretStr(VIEWER), role="viewer", models=("minilm",)),
            "elsewhere": TokenGrant(token=SecretStr(STRANGER), role="viewer", models=("other-*",)),
        },
        roles=[
            RoleGrant(subject="ml-ops", role="operator", models=("mini*",)),
            RoleGrant(subject="user:dana", role="viewer"),
        ],
        session_secret=SecretStr("s" * 32),
        **extra,
    )


@pytest.fixture
def served(tmp_path):
    """The app as `controller serve` builds it: create_app, then the console, actions and gate."""
    reconciler, store, runner, _ = make(tmp_path, Steps(answers={"analyze-5": ["waiting"]}), policy(5, 50))
    settings = reconciler.settings.model_copy(update={"auth": auth_settings(), "api_token": SecretStr(API)})
    ctx = ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store))
    acts = RolloutActions(store, ActionStore(store.path), reconciler, runner)
    reconciler.actions = acts
    app = create_app(ctx)
    sessions = mount(app, ctx, acts)
    now = time.time()
    for rid, model in (("minilm-v2-a", "minilm"), ("bert-v5-b", "bert")):
        store.create_rollout(
            RolloutRecord(
                id=rid, model=model, baseline_version="1", canary_version="2", created_at=now, updated_at=now
            )
        )
    for _ in range(3):
        reconciler.tick()
    return app, store, sessions


def concrete(path: str) -> str:
    values = {"rollout_id": "minilm-v2-a", "name": "minilm", "kind": "pause"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


def routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app answers, its own and the included routers' (FastAPI
    keeps an included router as one entry whose `effective_route_contexts` list its routes)."""
    out = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for one in contexts() if contexts is not None else [route]:
            for method in sorted((getattr(one, "methods", None) or {"GET"}) - {"HEAD"}):
                out.append((method, one.path))
    assert {("GET", "/docs"), ("GET", "/console"), ("POST", "/rollouts/{rollout_id}/actions/{kind}")} <= set(
        out
    )
    return out


def test_every_route_refuses_the_unauthenticated(served):
    app, _, _ = served
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    for method, path in routes(app):
        if path in OPEN or path.startswith("/webhooks/"):
            continue
        response = client.request(method, concrete(path), json={})
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        page = client.request(method, concrete(path), headers={"Accept": "text/html"})
        assert page.status_code in (401, 303), (method, path)
        if page.status_code == 303:
            assert page.headers["location"].startswith("/auth/login?next=")
    # A wrong token is refused, not taken for nobody-in-particular.
    wrong = client.get("/rollouts", headers={"Authorization": "Bearer not-a-token-of-ours"})
    assert wrong.status_code == 401


def test_every_route_refuses_the_wrong_role(served):
    app, _, _ = served
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    checked = 0
    for method, path in routes(app):
        if path in OPEN or path.startswith("/webhooks/") or path in ("/auth/logout", "/auth/whoami"):
            continue
        url = concrete(path)
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            response = client.request(method, url, json={}, headers={"Authorization": f"Bearer {VIEWER}"})
            assert response.status_code == 403, (method, path, response.text)
            checked += 1
        if (
            "{rollout_id}" in path or "{name}" in path
        ):  # about one model: a viewer of other models only sees nothing of it
            response = client.request(method, url, json={}, headers={"Authorization": f"Bearer {STRANGER}"})
            assert response.status_code == 403, (method, path, response.text)
            checked += 1
    assert checked >= 8


def test_the_rollout_list_shows_a_caller_only_the_models_it_holds_a_role_on(served):
    app, _, _ = served
    client = TestClient(app, base_url="https://testserver")
    seen = {
        token: {
            r["model"] for r in client.get("/rollouts", headers={"Authorization": f"Bearer {token}"}).json()
        }
        for token in (VIEWER, STRANGER, API)
    }
    assert seen == {VIEWER: {"minilm"}, STRANGER: set(), API: {"minilm", "bert"}}


def test_open_routes_stay_open(served):
    app, _, _ = served
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    unsigned = client.post("/webhooks/mlflow", content=b"{}")  # reaches its own signature check
    assert unsigned.status_code in (400, 401) and "error" in unsigned.json()


def test_operator_token_acts_and_the_legacy_api_token_still_works(served):
    app, _, _ = served
    client = TestClient(app, base_url="https://testserver")
    ops = {"Authorization": f"Bearer {OPERATOR}"}
    first = client.post("/rollouts/minilm-v2-a/actions/pause", json={"action_id": "pause-0001"}, headers=ops)
    assert first.status_code == 202 and first.json()["actor"] == "token:ops"
    again = client.post("/rollouts/minilm-v2-a/actions/pause", json={"action_id": "pause-0001"}, headers=ops)
    assert again.status_code == 200 and again.json() == first.json()
    twice = client.post("/rollouts/minilm-v2-a/actions/pause", json={}, headers=ops)
    assert twice.status_code == 409 and "paused already" in twice.json()["detail"]
    approve = client.post("/rollouts/minilm-v2-a/actions/approve", json={}, headers=ops)
    assert approve.status_code == 409 and "it is canary" in approve.json()["detail"]
    legacy = {"Authorization": f"Bearer {API}"}
    assert client.get("/rollouts", headers=legacy).status_code == 200
    history = client.get("/rollouts/minilm-v2-a/actions", headers=legacy).json()
    assert [a["kind"] for a in history] == ["pause"]
    # The operator of minilm is no operator of bert.
    assert client.post("/rollouts/bert-v5-b/actions/pause", json={}, headers=ops).status_code == 403


def test_proxy_headers_count_only_from_the_proxy(tmp_path):
    app2, _ = _app_with(tmp_path, auth_settings(proxy=ProxySettings(trusted=("10.0.0.0/8",))))
    headers = {"X-Forwarded-User": "erin", "X-Forwarded-Groups": "ml-ops, other"}
    outsider = TestClient(app2, base_url="https://testserver", client=("192.0.2.7", 5000))
    assert outsider.get("/rollouts", headers=headers).status_code == 401
    proxy = TestClient(app2, base_url="https://testserver", client=("10.1.2.3", 5000))
    me = proxy.get("/auth/whoami", headers=headers).json()
    assert me["user"] == "erin" and me["via"] == "proxy" and me["roles"][0]["role"] == "operator"
    # A change through the proxy needs the CSRF token too (the proxy's cookie is ambient authority).
    refused = proxy.post("/rollouts/minilm-v2-a/actions/pause", json={}, headers=headers)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    ok = proxy.post(
        "/rollouts/minilm-v2-a/actions/pause", json={}, headers={**headers, "X-CSRF-Token": me["csrf_token"]}
    )
    assert (
        ok.status_code == 409 and "it is pending" in ok.json()["detail"]
    )  # past the gate, to the phase check


def _app_with(tmp_path, auth: AuthSettings):
    reconciler, store, runner, _ = make(tmp_path, Steps(), policy(5))
    settings = reconciler.settings.model_copy(update={"auth": auth})
    ctx = ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store))
    app = create_app(ctx)
    mount(app, ctx, RolloutActions(store, ActionStore(store.path), reconciler, runner))
    now = time.time()
    store.create_rollout(
        RolloutRecord(id="minilm-v2-a", model="minilm", baseline_version="1", canary_version="2",
                      created_at=now, updated_at=now)
    )  # fmt: skip
    return app, store


def test_a_login_link_works_once_and_the_session_cookie_is_guarded(served):
    app, _, sessions = served
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    link = sessions.login_link_token("dana", ())
    first = client.get(f"/auth/once?token={link}&next=/console")
    assert first.status_code == 303 and first.headers["location"] == "/console"
    cookie = first.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert "samesite=lax" in cookie.lower()
    assert client.get(f"/auth/once?token={link}").status_code == 401  # used up
    page = client.get("/console", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "minilm" in page.text and "bert" in page.text
    # dana is a viewer: the rollout page shows no buttons and a form post is refused.
    rollout = client.get("/console/rollouts/minilm-v2-a")
    assert rollout.status_code == 200 and 'id="act-abort"' not in rollout.text
    me = client.get("/auth/whoami").json()
    form = {"kind": "abort", "reason": "x", "action_id": "abort-00000001", "csrf_token": me["csrf_token"]}
    assert client.post("/console/rollouts/minilm-v2-a/actions", data=form).status_code == 403
    # Another site's form (no CSRF token) is refused before anything else.
    no_csrf = client.post("/console/rollouts/minilm-v2-a/actions", data={"kind": "abort"})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
    # A redirect target elsewhere is never followed.
    other = client.get(f"/auth/once?token={sessions.login_link_token('dana')}&next=https://evil.example/")
    assert other.headers["location"] == "/console"


def test_sessions_expire(tmp_path):
    app, _ = _app_with(tmp_path, auth_settings(session_ttl_s=1))
    sessions = app.state.sessions
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    client.get(f"/auth/once?token={sessions.login_link_token('dana')}")
    assert client.get("/auth/whoami").status_code == 200
    time.sleep(2.1)
    assert client.get("/auth/whoami").status_code == 401


def test_an_operator_acts_from_the_page_with_the_form(served):
    app, store, sessions = served
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    client.get(f"/auth/once?token={sessions.login_link_token('frank', ('ml-ops',))}")
    page = client.get("/console/rollouts/minilm-v2-a")
    assert 'id="act-abort"' in page.text and 'id="act-pause"' in page.text
    assert "no notification channel is configured" in page.text  # none sent (test_console_notices.py)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    action_id = re.search(r'name="action_id" value="(abort-[^"]+)"', page.text).group(1)
    form = {"kind": "abort", "reason": "canary is slow", "action_id": action_id, "csrf_token": csrf}
    done = client.post("/console/rollouts/minilm-v2-a/actions", data=form)
    assert done.status_code == 303 and store.get("minilm-v2-a").phase == "rolling_back"
    # The same form sent again (a double click, a reload) is the same action: nothing new.
    assert client.post("/console/rollouts/minilm-v2-a/actions", data=form).status_code == 303
    again = client.post("/console/rollouts/minilm-v2-a/actions", data={**form, "action_id": "abort-other-1"})
    assert again.status_code == 409 and "rolling_back" in again.text
    listing = client.get("/console/api/rollouts", params={"phase": "rolling_back"}).json()
    assert [r["id"] for r in listing["items"]] == ["minilm-v2-a"]
