"""Directives to a running workflow's steps, read back from registry tags that anyone may write."""

from __future__ import annotations

from canaryflow.kernel.contracts.directives import TAG_PROMOTE_NOW, TAG_RETRIED, Directive, directive_for


def test_a_directive_is_obeyed_only_by_its_own_rollout_and_only_when_it_reads_cleanly() -> None:
    mine = Directive(rollout_id="m-v2-a", note="retried by alice: noise", weight=50)
    tags = {
        TAG_RETRIED: mine.model_dump_json(),
        TAG_PROMOTE_NOW: Directive(rollout_id="old", note="x").model_dump_json(),
    }
    assert directive_for(tags, TAG_RETRIED, "m-v2-a") == mine
    assert directive_for(tags, TAG_PROMOTE_NOW, "m-v2-a") is None  # an earlier rollout's
    assert directive_for({}, TAG_RETRIED, "m-v2-a") is None
    for hostile in (
        "not json",
        "[" * 5000 + "]" * 5000,  # nested past the guarded reader's depth
        '{"rollout_id": "m-v2-a", "note": "' + "x" * 9000 + '"}',  # past its size
        '{"rollout_id": "m-v2-a"}',  # no note
        '{"rollout_id": "m-v2-a", "note": "n", "weight": 1' + "0" * 5000 + "}",  # an integer too long
    ):
        assert directive_for({TAG_RETRIED: hostile}, TAG_RETRIED, "m-v2-a") is None
