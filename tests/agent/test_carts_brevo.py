"""Leaving a list (a recovered cart): merged, subtracted and sent as Brevo takes it."""

from __future__ import annotations

from agent.core.dedupe import known_after, minus_known
from agent.core.jobs import Job, Kind, merge_bodies
from agent.core.planner import batch_request, single_request

JOIN = {"email": "a@example.com", "attributes": {}, "updateEnabled": True, "listIds": [52]}
LEAVE = {"email": "a@example.com", "unlinkListIds": [52]}


def job(job_id: int, body: dict[str, object]) -> Job:
    return Job(job_id, "acct", "a", Kind.CONTACT, f"contact:{job_id}", body, False)


def test_leaving_a_list_that_was_only_queued_cancels_both() -> None:
    merged = merge_bodies(Kind.CONTACT, JOIN, LEAVE)
    assert "listIds" not in merged and "unlinkListIds" not in merged
    assert merged["updateEnabled"] is True


def test_joining_again_after_a_queued_leave_wins() -> None:
    merged = merge_bodies(Kind.CONTACT, LEAVE, JOIN)
    assert merged["listIds"] == [52] and "unlinkListIds" not in merged


def test_a_leave_goes_only_for_a_list_brevo_holds_the_contact_in() -> None:
    assert minus_known(Kind.CONTACT, LEAVE, {"attributes": {}, "listIds": [50]}) is None
    assert minus_known(Kind.CONTACT, LEAVE, {"attributes": {}, "listIds": [50, 52]}) == LEAVE
    after = known_after(Kind.CONTACT, LEAVE, {"attributes": {}, "listIds": [50, 52]})
    assert after["listIds"] == [50]
    # once out, a new abandonment joins again
    again = minus_known(Kind.CONTACT, JOIN, after)
    assert again is not None and again["listIds"] == [52]


def test_a_leave_is_a_batch_update_alone() -> None:
    request = single_request(job(1, LEAVE))
    assert (request.method, request.path) == ("POST", "/contacts/batch")
    assert request.body == {"contacts": [LEAVE]}
    batch = batch_request([job(2, JOIN), job(3, LEAVE), job(4, JOIN)])
    assert batch.path == "/contacts/batch" and [j.id for j in batch.jobs] == [3]
    assert [j.id for j in batch.extra_jobs] == [2, 4]
