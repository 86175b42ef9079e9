"""Value conversions from WooCommerce's REST representation to what Brevo accepts. Pure."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from agent.core.times import UTC_FORMAT, read_time

__all__ = [
    "brevo_datetime",
    "get_path",
    "money",
    "normalize_email",
    "phone_e164",
]

_MISSING = object()


def money(value: object) -> float | None:
    """WooCommerce money strings ("18.00", "1,234.50" never: REST uses dots) → float, 2 places."""
    if type(value) is str:  # what REST sends: read once per text (an order reads each twice)
        return _money_text(value) if value else None
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    return _money_text(str(value))


@lru_cache(maxsize=65536)
def _money_text(text: str) -> float | None:
    try:
        return float(round(Decimal(text), 2))
    except (InvalidOperation, ValueError):
        return None


# WooCommerce's `*_gmt` form: a naive UTC time whose text is already Brevo's, but for the "Z".
_GMT_TEXT = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def brevo_datetime(value: object) -> str | None:
    """Orders take UTC `YYYY-MM-DDTHH:mm:ssZ` (NOTES.md, eCommerce → orders)."""
    if isinstance(value, str) and _GMT_TEXT.fullmatch(value):
        # Every order has two of these: the text plus "Z" is what strftime would write (a
        # year from 1000 on has four digits both ways), once the calendar says it exists.
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None
        return value + "Z"
    dt = read_time(value)
    return dt.strftime(UTC_FORMAT) if dt else None


def normalize_email(value: object) -> str | None:
    """Lowercased, syntax-checked address, or None (no DNS lookups: the agent runs offline)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _normalize_email(value)


@lru_cache(maxsize=65536)  # the same addresses come back with every order: check each once
def _normalize_email(value: str) -> str | None:
    try:
        info = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return info.normalized.lower()


def phone_e164(number: object, country: object) -> str | None:
    """A phone in E.164 (+33612345678), read with the billing country as the default region."""
    if not isinstance(number, str) or not number.strip():
        return None
    region = country.upper() if isinstance(country, str) and len(country) == 2 else None
    return _phone_e164(number, region)


@lru_cache(maxsize=65536)
def _phone_e164(number: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def get_path(obj: dict[str, Any], path: str) -> Any:
    """`billing.phone`, `meta_data.loyalty_points` (WooCommerce's [{key, value}] list) → value."""
    parts = path.split(".")
    node: Any = obj
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "meta_data" and isinstance(node, dict):
            meta = node.get("meta_data")
            if i + 1 >= len(parts) or not isinstance(meta, list):
                return None
            key = parts[i + 1]
            found: Any = _MISSING
            for entry in meta:
                if isinstance(entry, dict) and entry.get("key") == key:
                    found = entry.get("value")  # later entries win, as get_meta() does
            if found is _MISSING:
                return None
            node = found
            i += 2
            continue
        if not isinstance(node, dict):
            return None
        node = node.get(part)
        i += 1
    return node
