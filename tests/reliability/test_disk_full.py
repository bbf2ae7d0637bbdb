"""The store's disk full: a delivery is refused with 503 + Retry-After, nothing half-written, and taken
once there is room again (issue 15, fault suite). SQLite's `max_page_count` caps the file at its
current size, which fails writes exactly as a full disk does ("database or disk is full")."""

from __future__ import annotations

import uuid

from tests.controller.conftest import signed_mlflow


def _cap(store, extra_pages: int = 0) -> None:
    pages = store.db.query("PRAGMA page_count")[0][0]
    store.db.query(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_a_full_store_refuses_deliveries_until_there_is_room(client, store):
    headers, body = signed_mlflow({"name": "minilm", "alias": "challenger", "version": "2"})
    assert client.post("/webhooks/mlflow", content=body, headers=headers).status_code == 202
    _cap(store)
    refused = []
    for _ in range(400):  # fill the last free pages of the file, then every write fails
        h, b = signed_mlflow(  # texts are capped at 1,024 characters at the parser
            {"name": "minilm", "alias": "c" * 1000, "version": "3"}, delivery_id=str(uuid.uuid4())
        )
        answer = client.post("/webhooks/mlflow", content=b, headers=h)
        assert answer.status_code in (202, 422, 503), answer.text
        if answer.status_code == 503:
            refused.append((h, b, answer))
    assert refused, "the capped store never filled up"
    h, b, answer = refused[-1]
    assert answer.headers["Retry-After"] and "not stored" in answer.json()["error"]
    assert store.db.query("PRAGMA integrity_check")[0][0] == "ok"
    before = len(store.inbox())
    store.db.query("PRAGMA max_page_count = 1073741823")
    assert client.post("/webhooks/mlflow", content=b, headers=h).status_code == 202  # the sender's retry
    assert len(store.inbox()) == before + 1
