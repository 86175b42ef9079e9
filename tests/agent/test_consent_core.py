"""Consent and suppression rules (agent/core/consent.py): values in, values out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.core.consent import (
    ConsentChoice,
    ConsentRecord,
    ConsentRules,
    apply_suppression,
    consent_in,
    in_force,
    ratchet,
)
from agent.core.times import gmt_seconds

T1 = gmt_seconds("2026-12-06T06:29:58")
assert T1 is not None


def meta(value: Any) -> dict[str, Any]:
    """A payload with a `_woobrevo_consent` meta_data entry."""
    return {"id": 5, "meta_data": [{"id": 1, "key": "other", "value": "x"},
                                   {"id": 9, "key": "_woobrevo_consent", "value": value}]}  # fmt: skip


def record(subscribed: bool, source: str = "checkout_classic", time: str = "2026-12-06T06:29:58Z") -> dict[str, Any]:  # fmt: skip
    return {"subscribed": subscribed, "time": time, "source": source, "text": "Send me news"}


def test_the_record_is_read_as_an_object_or_a_json_string() -> None:
    want = ConsentChoice(True, T1, "checkout_block")
    assert consent_in(meta(record(True, "checkout_block"))) == (want, None)
    assert consent_in(meta(json.dumps(record(True, "checkout_block")))) == (want, None)
    assert consent_in({"id": 5, "meta_data": []}) == (None, None)
    assert consent_in({"id": 5}) == (None, None)


@pytest.mark.parametrize(
    "value",
    [
        "{not json",
        ["a list"],
        42,
        {"subscribed": "yes", "time": "2026-12-06T06:29:58Z", "source": "my_account"},
        {"subscribed": True, "time": "yesterday", "source": "my_account"},
        {"subscribed": True, "time": "2026-12-06T06:29:58Z", "source": "newsletter_popup"},
    ],
)
def test_a_malformed_record_is_ignored_with_a_warning(value: Any) -> None:
    choice, warning = consent_in(meta(value))
    assert choice is None
    assert warning is not None and "_woobrevo_consent" in warning and "ignored" in warning


def choice(subscribed: bool, at: float, source: str = "checkout_classic") -> ConsentChoice:
    return ConsentChoice(subscribed, at, source)


def test_subscribing_sets_the_record_and_the_newer_time_wins() -> None:
    new = ratchet(None, choice(True, 100), double_opt_in=False)
    assert new == ConsentRecord(True, 100, "checkout_classic", None)
    assert ratchet(new, choice(True, 100), double_opt_in=False) is None  # the same again
    assert ratchet(new, choice(True, 50, "registration"), double_opt_in=False) is None
    later = ratchet(new, choice(True, 200, "my_account"), double_opt_in=False)
    assert later == ConsentRecord(True, 200, "my_account", None)


def test_an_unticked_checkout_or_registration_never_unsubscribes() -> None:
    subscribed = ConsentRecord(True, 100, "registration")
    for source in ("checkout_classic", "checkout_block", "registration"):
        assert ratchet(subscribed, choice(False, 200, source), double_opt_in=False) is None
        assert ratchet(None, choice(False, 200, source), double_opt_in=False) is None


def test_only_a_my_account_withdrawal_unsubscribes_and_only_a_newer_one() -> None:
    subscribed = ConsentRecord(True, 100, "checkout_block", "confirmed")
    withdrawn = ratchet(subscribed, choice(False, 200, "my_account"), double_opt_in=True)
    assert withdrawn == ConsentRecord(False, 200, "my_account", "confirmed")
    assert ratchet(subscribed, choice(False, 50, "my_account"), double_opt_in=False) is None
    # An older subscription arriving late does not undo the withdrawal.
    assert ratchet(withdrawn, choice(True, 150), double_opt_in=False) is None
    again = ratchet(withdrawn, choice(True, 300), double_opt_in=True)
    assert again == ConsentRecord(True, 300, "checkout_classic", "confirmed")  # no second DOI


def test_a_first_subscription_asks_for_a_double_opt_in_once() -> None:
    first = ratchet(None, choice(True, 100), double_opt_in=True)
    assert first is not None and first.doi == "pending"
    renewed = ratchet(first, choice(True, 200), double_opt_in=True)
    assert renewed is not None and renewed.doi == "pending"  # still waiting; not asked again
    confirmed = ConsentRecord(True, 100, "checkout_classic", "confirmed")
    renewed = ratchet(confirmed, choice(True, 200), double_opt_in=True)
    assert renewed is not None and renewed.doi == "confirmed"


def test_suppression_strips_lists_and_never_sends_blacklisting() -> None:
    body = {"email": "a@x.test", "attributes": {"A": 1}, "listIds": [50, 51],
            "updateEnabled": True, "emailBlacklisted": False}  # fmt: skip
    assert apply_suppression(body, {51}) == {
        "email": "a@x.test", "attributes": {"A": 1}, "listIds": [50], "updateEnabled": True}  # fmt: skip
    assert apply_suppression(body, {0}) == {
        "email": "a@x.test", "attributes": {"A": 1}, "updateEnabled": True}  # fmt: skip
    assert apply_suppression(body, {50, 51})["attributes"] == {"A": 1}
    assert "listIds" not in apply_suppression(body, {50, 51})
    unlink = {"email": "a@x.test", "unlinkListIds": [50]}
    assert apply_suppression(unlink, {0}) == unlink  # leaving a list is always allowed
    imported = {"jsonBody": [{"email": "a@x.test"}], "listIds": [50, 52]}
    assert apply_suppression(imported, {52}) == {
        "jsonBody": [{"email": "a@x.test"}],
        "listIds": [50],
    }


def test_a_later_subscription_lifts_a_suppression() -> None:
    rows = [(50, 100.0), (0, 300.0)]
    assert in_force(rows, None) == {50, 0}
    assert in_force(rows, ConsentRecord(True, 200, "my_account")) == {0}
    assert in_force(rows, ConsentRecord(True, 400, "my_account")) == frozenset()
    assert in_force(rows, ConsentRecord(False, 400, "my_account")) == {50, 0}


def test_which_lists_and_events_each_mode_allows() -> None:
    implied = ConsentRules("implied", frozenset({"order_fulfilled"}), None, (50, 51))
    required = ConsentRules("required", frozenset({"order_fulfilled"}), None, (50, 51))
    yes = ConsentRecord(True, 100, "checkout_classic")
    no = ConsentRecord(False, 100, "my_account")
    pending = ConsentRecord(True, 100, "checkout_classic", "pending")
    assert implied.lists([50, 51], None, ()) == [50, 51]
    assert implied.lists([50, 51], no, ()) == []  # a withdrawal holds in either mode
    assert required.lists([50, 51], None, ()) == []
    assert required.lists([50, 51], yes, ()) == [50, 51]
    assert required.lists([50, 51], pending, ()) == []  # until Brevo reports the confirmation
    assert required.lists([50, 51], yes, [(51, 200.0)]) == [50]
    assert required.lists([50, 51], yes, [(0, 50.0)]) == [50, 51]  # subscribed since
    assert implied.may_hear(None, "order_placed") and not implied.may_hear(no, "order_placed")
    assert not required.may_hear(None, "order_placed")
    assert required.may_hear(None, "order_fulfilled") and required.may_hear(no, "order_fulfilled")
    assert required.may_hear(yes, "order_placed") and required.may_hear(pending, "order_placed")
