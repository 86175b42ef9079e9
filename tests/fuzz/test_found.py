"""What the fuzz targets found, each kept as a plain regression test of the code that was fixed
(the shrunk input, as hypothesis printed it)."""

from __future__ import annotations

import pytest

from agent.core.webhooks import sign, verify_signature


@pytest.mark.attack(
    "fuzz: a WooCommerce signature header with a non-UTF-8 byte (aiohttp hands it over as a "
    "lone surrogate) made verify_signature raise UnicodeEncodeError: a 500 and a traceback"
)
def test_a_signature_header_with_undecodable_bytes_is_a_mismatch() -> None:
    body = b'{"id": 1}'
    for header in ("\udcbf", "abc\udcff=", sign(body, "s3cret") + "\udc80", "é" * 44):
        assert verify_signature(body, "s3cret", header) is False
    assert verify_signature(body, "s3cret", f" {sign(body, 's3cret')} ")
