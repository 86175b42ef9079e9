"""Dates Brevo accepts: which mapped paths are dates, and how their values are read. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.checks import attribute_type, wanted_attributes
from agent.core.mapping import calendar_date, contact_attributes
from agent.core.woo import COMPUTED_PATHS, DATE_FIELDS, is_date_path
from tests.agent.test_dates_to_brevo import DATE_MAPPING
from tests.conftest import ref

DATE_PATHS = [
    "date_created",
    "date_created_gmt",
    "date_modified",
    "date_modified_gmt",
    "first_order_date",
    "last_order_date",
    "meta_data.birthday",
    "meta_data.birthdate",
    "meta_data.date_of_birth",
    "meta_data.dob",
    "meta_data.birth_date",
    "meta_data._renewal_date",
    "meta_data.expiry-date",
    "meta_data.signupDate",
    "meta_data.SIGNUP_DATE",
    "meta_data.date",
    "meta_data.subscribed_at",
    "meta_data.date_created",  # WooCommerce's own names are dates at any depth
    "shipping.date_modified_gmt",
]
NOT_DATE_PATHS = [
    "email",
    "first_name",
    "billing.phone",
    "orders_count",
    "total_spent",
    "meta_data.loyalty_points",
    "meta_data.last_update",  # "date" only as the end of another word
    "meta_data.candidate",
    "meta_data.format",
    "meta_data.stat",
    "meta_data.date_format",
    "meta_data.wc_last_active",
    "birthday",  # the key rule is for meta keys only
    "date",
]


@pytest.mark.parametrize("path", DATE_PATHS)
def test_date_paths_are_dates_for_the_mapping_and_for_doctor(path: str) -> None:
    assert is_date_path(path)
    assert attribute_type(path) == "date"


@pytest.mark.parametrize("path", NOT_DATE_PATHS)
def test_other_paths_are_not_dates(path: str) -> None:
    assert not is_date_path(path)
    assert attribute_type(path) != "date"


def test_the_one_list_covers_the_computed_dates_and_woocommerce_fields() -> None:
    assert {p for p in COMPUTED_PATHS if is_date_path(p)} == {
        "first_order_date",
        "last_order_date",
    }
    assert all(is_date_path(f) for f in DATE_FIELDS)
    assert attribute_type("orders_count") == attribute_type("total_spent") == "float"


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2017-03-21", "2017-03-21"),
        ("2017-03-21T16:09:28", "2017-03-21"),  # date_created: the store's local date
        ("2017-03-21 23:30:00", "2017-03-21"),
        ("2017-03-21T23:30:00.123456", "2017-03-21"),
        ("2017-03-21T23:30:00Z", "2017-03-21"),
        ("2017-03-21T23:30:00+02:00", "2017-03-21"),  # the date as written, in its offset
        ("2017-03-22T00:30:00-05:00", "2017-03-22"),
        (" 1990-04-01 ", "1990-04-01"),
        ("19900401", "1990-04-01"),  # ISO 8601 basic form (ACF's date picker)
        (1490112568, "2017-03-21"),  # unix seconds, UTC
        ("1490112568", "2017-03-21"),
        (1490112568.5, "2017-03-21"),
        (1490112568000, "2017-03-21"),  # milliseconds
        ("1490112568000", "2017-03-21"),
        (-86400, "1969-12-31"),
    ],
)
def test_calendar_date_reads_iso_8601_and_unix_timestamps(value: Any, day: str) -> None:
    assert calendar_date(value) == day


@pytest.mark.parametrize(
    "value",
    [
        "05/04/1984",  # d/m/Y or m/d/Y: ambiguous, never guessed
        "05.04.1984",
        "April 1, 1990",
        "2017-02-30",
        "2017-13-01",
        "yes",
        "",
        0,
        "0",
        True,
        None,
        {"date": "2017-03-21"},
        ["2017-03-21"],
        10**20,
        float("nan"),
    ],
)
def test_calendar_date_refuses_what_it_cannot_read(value: Any) -> None:
    assert calendar_date(value) is None


MAPPING = {
    "email": "email",
    "first_name": "FIRSTNAME",
    **DATE_MAPPING,
    "orders_count": "ORDER_COUNT",
    "meta_data.loyalty_points": "LOYALTY_POINTS",
}
COMPUTED = {
    "orders_count": 2,
    "total_spent": 10.0,
    "first_order_date": "2017-03-21T19:16:00",
    "last_order_date": "2026-11-27T05:18:14",
}


def customer(**changes: Any) -> dict[str, Any]:
    # The store runs at UTC-3: 22:30 local on the 26th is 01:30 UTC on the 27th.
    return {
        **ref("customer.json"),
        "date_created": "2026-11-26T22:30:00",
        "date_created_gmt": "2026-11-27T01:30:00",
        "meta_data": [
            {"id": 1, "key": "birthday", "value": "1990-04-01"},
            {"id": 2, "key": "subscribed_at", "value": 1490112568},
            {"id": 3, "key": "loyalty_points", "value": "2026-01-01T00:00:00"},
        ],
        **changes,
    }


def test_every_mapped_date_goes_out_as_yyyy_mm_dd() -> None:
    attrs, warnings = contact_attributes(customer(), MAPPING, COMPUTED, country="US")
    assert warnings == []
    assert attrs == {
        "FIRSTNAME": "John",
        "SIGNUP_DATE": "2026-11-26",  # the store's calendar date
        "SIGNUP_DATE_GMT": "2026-11-27",  # UTC's
        "MODIFIED_DATE": "2017-03-21",
        "MODIFIED_DATE_GMT": "2017-03-21",
        "FIRST_ORDER_DATE": "2017-03-21",
        "LAST_ORDER_DATE": "2026-11-27",
        "ORDER_COUNT": 2,
        "BIRTHDAY": "1990-04-01",
        "SUBSCRIBED_AT": "2017-03-21",
        "LOYALTY_POINTS": "2026-01-01T00:00:00",  # not a date path: sent as it is
    }
    # doctor --fix creates each attribute with the type of what is sent
    types = wanted_attributes(MAPPING)
    assert {a for a, kind in types.items() if kind == "date"} == {
        "SIGNUP_DATE",
        "SIGNUP_DATE_GMT",
        "MODIFIED_DATE",
        "MODIFIED_DATE_GMT",
        "FIRST_ORDER_DATE",
        "LAST_ORDER_DATE",
        "BIRTHDAY",
        "SUBSCRIBED_AT",
    }


def test_an_unreadable_date_drops_only_that_attribute_with_a_warning() -> None:
    meta = [{"id": 1, "key": "birthday", "value": "05/04/1984"}]
    attrs, warnings = contact_attributes(
        customer(meta_data=meta, date_modified="soon"), MAPPING, COMPUTED, country="US"
    )
    assert "BIRTHDAY" not in attrs and "MODIFIED_DATE" not in attrs
    assert attrs["SIGNUP_DATE"] == "2026-11-26" and attrs["FIRSTNAME"] == "John"
    assert warnings == [
        "date_modified 'soon' is not a date; MODIFIED_DATE not sent",
        "meta_data.birthday '05/04/1984' is not a date; BIRTHDAY not sent",
    ]


def test_missing_dates_are_not_sent_and_not_warned_about() -> None:
    no_orders = {**COMPUTED, "first_order_date": None, "last_order_date": None}
    attrs, warnings = contact_attributes(
        customer(meta_data=[], date_modified=None, date_modified_gmt=""),
        MAPPING,
        no_orders,
        country="US",
    )
    assert warnings == []
    assert not {"BIRTHDAY", "SUBSCRIBED_AT", "MODIFIED_DATE", "FIRST_ORDER_DATE"} & set(attrs)


def test_an_order_only_update_sends_the_computed_dates() -> None:
    attrs, warnings = contact_attributes({}, MAPPING, COMPUTED, country=None, only_computed=True)
    assert (attrs, warnings) == (
        {"FIRST_ORDER_DATE": "2017-03-21", "LAST_ORDER_DATE": "2026-11-27", "ORDER_COUNT": 2},
        [],
    )
