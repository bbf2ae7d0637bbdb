"""The console's list: who sees which rows, filters, sorting and paging (pure, from records)."""

from __future__ import annotations

from controller.auth.identity import Identity
from controller.auth.settings import RoleGrant
from controller.console.views import ListQuery, age, checks, listing
from controller.rollout.records import RolloutRecord


def records(n: int) -> list[RolloutRecord]:
    return [
        RolloutRecord(
            id=f"r{i:03d}", model=("search-a", "search-b", "ranker")[i % 3], baseline_version="1",
            canary_version=str(i + 2), created_at=1000.0 + i, updated_at=1000.0 + i,
            phase="promoted" if i % 2 else "canary", finished_at=2000.0 if i % 2 else None,
        )
        for i in range(n)
    ]  # fmt: skip


def test_rows_are_only_those_of_models_the_person_may_see():
    who = Identity(user="dana", grants=(RoleGrant(subject="g", role="viewer", models=("search-*",)),))
    data = listing(records(30), who, ListQuery(per_page=100))
    assert data["total"] == 20 and {r["model"] for r in data["items"]} == {"search-a", "search-b"}


def test_filter_sort_and_pages():
    who = Identity(user="ops", grants=(RoleGrant(subject="g", role="operator"),))
    rows = records(120)
    first = listing(rows, who, ListQuery())
    assert (first["total"], first["pages"], len(first["items"])) == (120, 3, 50)
    assert first["items"][0]["id"] == "r119"  # newest first
    last = listing(rows, who, ListQuery(page=3))
    assert [r["id"] for r in last["items"]][-1] == "r000" and len(last["items"]) == 20
    active = listing(rows, who, ListQuery(active=True, model="RANK", sort="created_at", order="asc"))
    assert all(r["model"] == "ranker" and r["phase"] == "canary" for r in active["items"])
    assert [r["created_at"] for r in active["items"]] == sorted(r["created_at"] for r in active["items"])
    promoted = listing(rows, who, ListQuery(phase="promoted"))
    assert promoted["total"] == 60 and all(r["weight"] == 100 for r in promoted["items"])


def test_words_and_ages():
    assert [age(s) for s in (5, 125, 7300, 200000)] == ["5s", "2m", "2h", "2d"]
    verdict = {
        "checks": [{"metric": "latency_p99", "verdict": "fail", "reason": "p99 +40%", "e_value": 31.5}]
    }
    assert checks(verdict) == [
        {"metric": "latency_p99", "verdict": "fail", "reason": "p99 +40%", "evidence": "e_value=31.5"}
    ]


def test_the_evidence_plot_draws_each_look_with_its_bounds_against_the_thresholds():
    from xml.etree import ElementTree

    from controller.console.evidence_plot import plots
    from controller.rollout.records import RolloutDetail, StepRecord

    evidence = {
        "metric": "latency_p99<b>",
        "kind": "latency",
        "tolerance": 0.1,
        "alternative": 0.25,
        "elapsed_s": [15.0, 30.0, 45.0, 60.0],
        "estimate": [None, 0.02, 0.3, 0.35],
        "lower": [None, -0.5, 0.05, 0.12],
        "upper": [None, 9.0, 0.6, 0.5],
    }
    failed = {"decision": "rollback", "evidence": [evidence]}
    older = {"decision": "inconclusive", "checks": []}  # a verdict from before evidence was kept
    detail = RolloutDetail(
        id="r1", model="m", baseline_version="1", canary_version="2", created_at=0.0, updated_at=0.0,
        steps=[StepRecord(index=0, weight=10, status="fail", verdict=failed),
               StepRecord(index=1, weight=50, verdict=older)],
    )  # fmt: skip
    [plot] = plots(detail)
    assert (plot["step"], plot["metric"], plot["looks"]) == ("step 1 at 10%", "latency_p99<b>", 4)
    svg = ElementTree.fromstring(plot["svg"])  # well-formed, the metric's name escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.get("data-metric") == "latency_p99<b>" and svg.get("data-looks") == "4"
    dots = [c.find(f"{ns}title").text for c in svg.iter(f"{ns}circle")]
    assert dots == [
        "latency_p99<b> at 30 s: +2.0% [-50.0%, +900.0%]",
        "latency_p99<b> at 45 s: +30.0% [+5.0%, +60.0%]",
        "latency_p99<b> at 60 s: +35.0% [+12.0%, +50.0%]",
    ]
    labels = {t.text for t in svg.iter(f"{ns}text")}
    assert {"+10.0%", "+25.0%", "0", "15 s", "60 s"} <= labels
    lines = {line.get("class"): float(line.get("y1") or 0) for line in svg.iter(f"{ns}line")}
    assert lines["threshold-alt"] < lines["threshold-tolerance"] < lines["threshold-0"]  # higher is worse
    band = svg.find(f"{ns}polygon")
    assert band is not None and len((band.get("points") or "").split()) == 8  # upper and lower per look
