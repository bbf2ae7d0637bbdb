"""`PUT /models/{name}/drift/reference` on the real controller app: a span of the champion's own
prediction log replaces the captured reference (recalibrated), refusals name the field, the bearer
token guards it, and the reference survives a restart even after the log's files are gone."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from canaryflow.adapters.predictions import LocalDirectoryReader
from canaryflow.kernel.contracts.drift import DriftEvent
from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.controller_settings import ControllerSettings
from controller.drift_monitor import ChampionSource, DriftMonitor
from controller.drift_reference import ReferenceShelf
from controller.observability import ControllerMetrics
from tests.drift.synthetic import Traffic

from .test_drift_monitor import POLICY, T0, Clock, _promote

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(settings: ControllerSettings, store, logs: Path, clock: Clock) -> tuple[DriftMonitor, TestClient]:
    champions = ChampionSource(store, None, [], "champion", clock)
    shelf = ReferenceShelf.beside(settings.db_path)
    monitor = DriftMonitor(POLICY, LocalDirectoryReader(logs), champions, shelf=shelf, clock=clock)
    metrics = ControllerMetrics(store)
    context = ControllerContext(settings=settings, store=store, metrics=metrics, drift=monitor)
    return monitor, TestClient(create_app(context))


def test_a_span_set_by_the_user_replaces_the_reference_and_survives_a_restart(tmp_path, settings, store):
    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    logs, clock, traffic = tmp_path / "logs", Clock(), Traffic(seed=41)
    log = logs / "minilm" / f"predictions-{T0:.3f}-1.jsonl"
    _promote(store, "minilm", "2", T0)
    monitor, client = _app(settings, store, logs, clock)
    events: list[DriftEvent] = []
    monitor.listeners.append(events.append)
    traffic.write(log, 400, t0=T0, t1=T0 + 120, version="2")
    clock.now = T0 + 121
    monitor.tick()  # the captured reference
    traffic.write(log, 150, t0=T0 + 121, t1=T0 + 181, version="2", new_topic=0.6)  # the new normal
    clock.now = T0 + 182
    monitor.tick()
    assert client.get("/models/minilm/drift").json()["drift"] is True

    span = {"since": T0 + 121, "until": T0 + 182}
    assert client.put("/models/minilm/drift/reference", json=span).status_code == 401
    wrong = client.put("/models/minilm/drift/reference", json=span, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    too_few = client.put("/models/minilm/drift/reference", json=span, headers=AUTH)
    assert too_few.status_code == 422
    assert too_few.json()["detail"].startswith("since/until: version 2 in this span: reference: 150 records")

    traffic.write(log, 300, t0=T0 + 182, t1=T0 + 300, version="2", new_topic=0.6)
    clock.now = T0 + 301
    done = client.put("/models/minilm/drift/reference", json={"since": T0 + 121, "until": T0 + 301},
                      headers=AUTH)  # fmt: skip
    assert done.status_code == 200, done.text
    reference = done.json()["reference"]
    assert reference["state"] == "ready" and reference["samples"] == 450
    assert reference["span"] == [T0 + 121, T0 + 301] and "set through the API" in reference["source"]
    assert client.get("/models/minilm/drift").json()["reference"] == reference

    traffic.write(log, 150, t0=T0 + 301, t1=T0 + 361, version="2", new_topic=0.6)
    clock.now = T0 + 362
    monitor.tick()  # judged against the new reference: the shifted traffic is normal now
    assert client.get("/models/minilm/drift").json()["drift"] is False
    assert [e.type for e in events] == ["drift.detected", "drift.cleared"]

    shutil.rmtree(logs)  # the servers' retention removed the span: the saved records still serve
    restarted, again = _app(settings, store, logs, clock)
    clock.now = T0 + 400
    restarted.tick()
    after = again.get("/models/minilm/drift").json()["reference"]
    assert after["state"] == "ready" and after["samples"] == 450 and after["span"] == [T0 + 121, T0 + 301]

    _promote(store, "minilm", "3", T0 + 410)  # a new champion: the saved reference was for version 2
    clock.now = T0 + 420
    restarted.tick()
    assert again.get("/models/minilm/drift").json()["reference"]["state"] == "collecting"


def test_bad_requests_are_refused_naming_the_field(tmp_path, settings, store):
    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    clock = Clock()
    _promote(store, "minilm", "2", T0)
    monitor, client = _app(settings, store, tmp_path, clock)
    Traffic(seed=42).write(tmp_path / "minilm" / f"predictions-{T0:.3f}-1.jsonl", 300, t0=T0, t1=T0 + 100)
    clock.now = T0 + 200
    monitor.tick()

    def put(body: object, model: str = "minilm") -> tuple[int, str]:
        r = client.put(f"/models/{model}/drift/reference", json=body, headers=AUTH)
        return r.status_code, r.json()["detail"]

    assert put({"since": T0, "until": T0 - 1}) == (422, "until: must be after since")
    assert put({"since": T0}) == (422, "until: Field required")
    assert put({"since": -1, "until": T0})[1].startswith("since: ")
    assert put({"since": T0, "until": T0 + 100, "path": "/etc/passwd"}) == (
        422, "path: Extra inputs are not permitted"
    )  # fmt: skip
    assert put(["since"])[0] == 422
    status, reason = put({"since": T0, "until": T0 + 1000})
    assert status == 422 and reason.startswith(f"until: {T0 + 1000:.0f} is in the future")
    status, reason = put({"since": T0, "until": T0 + 100, "version": "9"})  # version 1's records only
    assert status == 422 and "version 9 in this span: reference: 0 records" in reason
    status, reason = put({"since": T0, "until": T0 + 100}, model="other")
    assert status == 404 and "no watched champion" in reason
    raw = client.put("/models/minilm/drift/reference", content=b"{", headers=AUTH)
    assert raw.status_code == 400 and raw.json()["detail"].startswith("body: not JSON")
    assert monitor.status("minilm")["reference"]["state"] == "collecting"  # nothing was changed


def test_hostile_bodies_are_a_400_naming_the_problem(tmp_path, settings, store):
    """Not UTF-8, nested 30k deep, an integer past Python's 4,300-digit limit, NaN: each one line, a
    400, the reference untouched (a 500 before: only JSONDecodeError was caught)."""
    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    _promote(store, "minilm", "2", T0)
    monitor, client = _app(settings, store, tmp_path, Clock())
    before = monitor.status("minilm")
    bodies = {
        b'{"since": 1, "until": "\xff\xfe"}': "not UTF-8",
        b"[" * 30_000 + b"]" * 30_000: "nested too deeply",
        b'{"since": ' + b"9" * 5000 + b', "until": 2}': "an integer of 5000 digits",
        b'{"since": NaN, "until": 2}': "NaN is not a number",
        b'{"since": 1e999, "until": 2}': "inf is not a finite number",
    }
    for body, reason in bodies.items():
        response = client.put("/models/minilm/drift/reference", content=body, headers=AUTH)
        assert response.status_code == 400, (body[:40], response.text)
        detail = response.json()["detail"]
        assert detail.startswith(("body: ", "body.")) and reason in detail and "\n" not in detail
    assert monitor.status("minilm") == before


def test_without_a_configured_token_the_endpoint_is_off(tmp_path, settings, store):
    _promote(store, "minilm", "2", T0)
    _, client = _app(settings, store, tmp_path, Clock())
    response = client.put("/models/minilm/drift/reference", json={"since": 1, "until": 2}, headers=AUTH)
    assert response.status_code == 403 and "CANARYFLOW_CONTROLLER_API_TOKEN" in response.json()["detail"]


def test_a_parquet_reference_file_from_the_settings_is_used_as_wired(tmp_path, settings, store):
    import numpy as np
    import pyarrow.parquet as pq

    from canaryflow.app.wiring import build_drift_monitor
    from controller.controller_settings import DriftMonitorSettings
    from inference.prediction_parquet import samples_table
    from inference.prediction_records import Sample

    x, tok, lat = Traffic(seed=43).arrays(300)
    samples = [
        Sample(T0 + i, "minilm", "1", lat[i], int(tok[i]), x[i].astype(np.float32), None) for i in range(300)
    ]
    reference = tmp_path / "validated.parquet"
    pq.write_table(samples_table(samples, x.shape[1]), reference)
    drift = DriftMonitorSettings(enabled=True, location=tmp_path, reference_files={"minilm": reference})
    monitor = build_drift_monitor(settings.model_copy(update={"drift": drift}), store, None)
    assert monitor is not None and isinstance(monitor.reader, LocalDirectoryReader)
    monitor.policy, monitor.clock = POLICY, Clock()
    _promote(store, "minilm", "2", T0)
    monitor.tick()
    status = monitor.status("minilm")
    assert status is not None and status["reference"]["state"] == "ready", status["reference"]
    assert status["reference"]["samples"] == 300 and status["reference"]["source"] == str(reference)
