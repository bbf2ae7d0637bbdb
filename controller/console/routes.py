"""The rollout console: pages for people, served by the controller under `/console`, behind the gate.

`mount` adds, to the controller's app, the login routes, the actions API and the pages, then the
authentication gate in front of every route (docs/console.md). Pages are rendered on the server
(Jinja2, autoescaped); the little CSS and JavaScript they use ship with canaryflow (package data) and
nothing is fetched at run time. A page refreshes its live part by fetching itself as a fragment
(`?fragment=1`) every `console.refresh_s`.
"""

from __future__ import annotations

import re
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from canaryflow.kernel.errors import first_error
from controller.action_routes import ActionBody, action_routes
from controller.actions import ALLOWED, ActionRefused, ActionRequest, RolloutActions
from controller.api.api_context import ControllerContext
from controller.auth.gate import Gate, form_of, identity_of, require
from controller.auth.identity import Sessions
from controller.auth.oidc import Issuer, auth_routes
from controller.console import evidence_plot, views
from controller.rollout.actions import ACTION_KINDS
from controller.rollout.store import RolloutStore

HERE = Path(__file__).parent
STATIC = HERE / "static"
_ROLLOUT_PATH = re.compile(r"^(?:/console)?/rollouts/([^/]+)")
_MODEL_PATH = re.compile(r"^(?:/console)?/models/([^/]+)")


def model_of_path(store: RolloutStore, path: str) -> str | None:
    """The model a path is about: a rollout's (by id) or a model page's / endpoint's."""
    if match := _ROLLOUT_PATH.match(path):
        record = store.get(match.group(1))
        return record.model if record is not None else None
    if match := _MODEL_PATH.match(path):
        return match.group(1)
    return None


def mount(app: FastAPI, ctx: ControllerContext, actions: RolloutActions | None) -> Sessions:
    """Adds the console, the login and the actions API to `app`, and the gate before all of it."""
    settings = ctx.settings
    auth = settings.auth
    sessions = Sessions(auth)
    issuer = Issuer(auth.oidc) if auth.oidc is not None else None
    token = settings.api_token.get_secret_value() if settings.api_token else None
    gate = Gate(auth, sessions, token, model_of=partial(model_of_path, ctx.store))
    app.include_router(auth_routes(auth, sessions, issuer))
    if actions is not None:
        app.include_router(action_routes(actions))
    if settings.console.enabled:
        app.include_router(console_routes(ctx, actions))
    gate.install(app)
    app.state.sessions = sessions
    return sessions


def console_routes(ctx: ControllerContext, actions: RolloutActions | None) -> APIRouter:
    router = APIRouter(tags=["console"], include_in_schema=False)
    store, console = ctx.store, ctx.settings.console
    pages = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
    )
    pages.filters["age"] = views.age
    pages.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))

    def page(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        me = identity_of(request)
        html = pages.get_template(name).render(me=me, refresh_ms=int(console.refresh_s * 1000), **values)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    @router.get("/console", response_class=HTMLResponse)
    def rollout_list(request: Request, fragment: bool = False, q: views.ListQuery = Query()) -> HTMLResponse:
        data = views.listing(store.rollouts(), identity_of(request), q)
        name = "list_rows.html" if fragment else "list.html"
        return page(request, name, data=data, q=q, phases=sorted(ALLOWED["abort"] | ALLOWED["retry"]))

    @router.get("/console/api/rollouts")
    def rollout_rows(request: Request, q: views.ListQuery = Query()) -> dict[str, Any]:
        return views.listing(store.rollouts(), identity_of(request), q)

    @router.get("/console/rollouts/{rollout_id}", response_class=HTMLResponse)
    def rollout_page(
        request: Request, rollout_id: str, fragment: bool = False, done: str = ""
    ) -> HTMLResponse:
        detail = store.detail(rollout_id)
        if detail is None:
            raise HTTPException(404, f"no rollout {rollout_id!r}")
        me = require(request, detail.model, "viewer")
        history = actions.actions.of_rollout(rollout_id) if actions is not None else []
        paused = actions is not None and actions.held(rollout_id)
        possible = [
            k for k in ACTION_KINDS if detail.phase in ALLOWED[k] and (k != "resume" or paused)
            and (k != "pause" or not paused)
        ] if actions is not None and me.can(detail.model, "operator") else []  # fmt: skip
        drift = ctx.drift.status(detail.model) if ctx.drift is not None else None
        workflow = ctx.workflow_link(detail.workflow) if ctx.workflow_link and detail.workflow else None
        commits = [
            {**c.model_dump(), "url": console.commit_url.format(sha=c.sha) if console.commit_url else None}
            for c in detail.commits
        ]
        steps = [{**s.model_dump(), "checks": views.checks(s.verdict)} for s in detail.steps]
        return page(
            request,
            "rollout_live.html" if fragment else "rollout.html",
            r=detail,
            steps=steps,
            commits=commits,
            history=history,
            possible=possible,
            drift=drift,
            workflow=workflow,
            plots=evidence_plot.plots(detail),
            notices=ctx.notice_log.of_rollout(rollout_id) if ctx.notice_log is not None else None,
            action_id=str(uuid.uuid4()),
            done=done,
        )

    @router.post("/console/rollouts/{rollout_id}/actions", response_model=None)
    async def rollout_action(request: Request, rollout_id: str) -> Response:
        """The page's buttons (a form with the CSRF token; the gate checked it), through the API's logic."""
        if actions is None:
            raise HTTPException(404, "actions are off")
        record = store.get(rollout_id)
        if record is None:
            raise HTTPException(404, f"no rollout {rollout_id!r}")
        form = await form_of(request)
        try:
            body = ActionBody.model_validate(
                {k: form[k] for k in ("reason", "action_id", "head_sha") if form.get(k)}
            )
        except ValidationError as exc:
            raise HTTPException(422, first_error(exc, "form")) from exc
        kind = form.get("kind", "")
        if kind not in ACTION_KINDS:
            raise HTTPException(422, f"kind: one of {', '.join(ACTION_KINDS)}")
        me = require(request, record.model, "operator")
        wanted = ActionRequest(kind, me.user, body.reason, body.action_id, body.head_sha)
        try:
            action, _ = await run_in_threadpool(actions.request, rollout_id, wanted)
        except ActionRefused as exc:
            return page(request, "refused.html", r=record, message=exc.message, status_code=exc.status)
        return RedirectResponse(f"/console/rollouts/{rollout_id}?done={action.id}", status_code=303)

    @router.get("/console/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: str) -> HTMLResponse:
        require(request, name, "viewer")
        records = list(reversed(store.rollouts(model=name)))
        drift = ctx.drift.status(name) if ctx.drift is not None else None
        return page(
            request, "model.html", model=name, rows=[views.row(r, time.time()) for r in records], drift=drift
        )

    @router.get("/console/static/{filename}")
    def static(filename: str) -> FileResponse:
        path = STATIC / filename
        if "/" in filename or filename.startswith(".") or not path.is_file():
            raise HTTPException(404, f"no file {filename!r}")
        return FileResponse(path, headers={"Cache-Control": "max-age=300"})

    return router
