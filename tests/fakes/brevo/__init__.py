"""A stand-in for Brevo's API v3 (https://api.brevo.com/v3) for the agent's tests and benchmarks.

It listens on 127.0.0.1 (port 0, read back) and:

* checks every request against Brevo's own OpenAPI spec (`tests/fixtures/brevo/openapi.yaml`,
  patched as its `ERRATA.md` says, see `patch_spec`); a refused request gets 400
  `invalid_parameter` and lands in `spec_violations`;
* answers as Brevo does (reference/brevo/NOTES.md §2-§3: 201/202/204 codes, upserts without a
  body, `{"code", "message"}` errors) over in-memory state that tests read;
* meters each endpoint family in fixed windows with `x-sib-ratelimit-*` headers (NOTES.md §4),
  and refuses with 429 when asked to enforce them;
* fails on script: `fail_next`, `outage`, `stall`.

In a test::

    async with BrevoFake(enforce_limits=True) as fake:
        ...  # point the client at fake.base_url with fake.api_key
        await fake.wait_for(lambda: len(fake.orders) == 10)
    fake.assert_no_spec_violations()

In conftest.py, `brevo = brevo_fake_fixture()` gives tests a `brevo` fixture that fails the test
on a spec violation at teardown. In its own process (benchmarks)::

    python -m tests.fakes.brevo --port 0 --port-file PORT --summary SUMMARY.json --time-scale 60

`family_of`, `PLAN_LIMITS` and `format_reset` are plain: importing this package loads neither
aiohttp nor the validators; they load when a fake is built.

Where each part lives: limits.py (endpoint families, rate windows and their headers), errata.py
(where the spec is and how it is patched), fastcheck.py and spec.py (checking requests and the
fake's answers), state.py (the account in memory) with one mixin of handlers per family of
endpoints (contacts.py, lists.py, events.py, ecommerce.py), fake.py (`BrevoFake`: the request
path, scripting, the pytest fixture) and cli.py (`python -m tests.fakes.brevo`).
"""

from tests.fakes.brevo.errata import spec_path
from tests.fakes.brevo.fake import DEFAULT_API_KEY, BrevoFake, RecordedRequest, brevo_fake_fixture
from tests.fakes.brevo.limits import PLAN_LIMITS, family_of, format_reset
from tests.fakes.brevo.spec import load_spec

__all__ = [
    "DEFAULT_API_KEY",
    "PLAN_LIMITS",
    "BrevoFake",
    "RecordedRequest",
    "brevo_fake_fixture",
    "family_of",
    "format_reset",
    "load_spec",
    "spec_path",
]
