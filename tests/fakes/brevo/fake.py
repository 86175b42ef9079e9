"""`BrevoFake`: Brevo API v3 on 127.0.0.1, spec-checked, stateful, metered and scriptable;
the request path (spec check, limits, scripted faults, handler) and the pytest fixture.
Importing this loads no aiohttp; starting a fake does."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from tests.fakes.brevo.contacts import ContactEndpoints
from tests.fakes.brevo.ecommerce import EcommerceEndpoints
from tests.fakes.brevo.errata import spec_path
from tests.fakes.brevo.events import EventEndpoints
from tests.fakes.brevo.limits import API_PREFIX, FAMILIES, PLAN_LIMITS, Budget, Windows, family_of
from tests.fakes.brevo.lists import ListEndpoints
from tests.fakes.brevo.spec import BrevoSpec, load_spec
from tests.fakes.brevo.state import Call, Handler, error

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_API_KEY = "xkeysib-fake-0000000000000000"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake saw; `status` is None when the client went away first."""

    time: float  # the fake's clock (time.monotonic by default) when it arrived
    method: str
    path: str  # below /v3, decoded: "/contacts/a@b.com"
    query: dict[str, str]
    json: Any
    status: int | None
    family: str
    route: str | None = None  # the spec's template: "/contacts/{identifier}"
    over_limit: bool = False  # beyond the family's limit (refused only with enforce_limits)


@dataclass(frozen=True, slots=True)
class _Match:
    """Which requests a script applies to: all of them, a family, a path or a template."""

    family: str | None = None
    path: str | None = None

    def __call__(self, family: str, path: str, route: str | None) -> bool:
        if self.family is not None and self.family != family:
            return False
        return self.path is None or self.path in (path, route)


@dataclass(slots=True)
class _Fault:
    left: int
    status: int
    match: _Match
    body: Any
    headers: dict[str, str]


# Answers the fake gives in another shape than the spec's: the spec (and the docs page made
# from it) give GET /couponCollections the schema of a single collection; the fake answers a
# page, {"collections": [...], "count": N} (UNVERIFIED against a real account).
_UNCHECKED_RESPONSES = {("GET", "/couponCollections")}

_MAX_BODY = 16 * 1024 * 1024  # above Brevo's 10 MB import limit, so the fake can refuse it


def _code_for(status: int) -> str:
    """The code of a scripted failure: the status phrase, as in "too_many_requests"."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    """The body as JSON (NaN and Infinity refused, as a strict parser does) or the error."""
    if not raw:
        return None, None
    try:
        return json.loads(raw, parse_constant=_reject_constant), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, str(exc)


class BrevoFake(ContactEndpoints, ListEndpoints, EventEndpoints, EcommerceEndpoints):
    """Brevo API v3 on 127.0.0.1: spec-checked, stateful, metered and scriptable.

    State (plain dicts, read them in tests): `contacts` (lowercased email, or "#<id>" for a
    contact without one → {"id", "email", "attributes", "listIds", "ext_id"}), `contact_flags`
    (id → blacklist flags and dates), `attributes`, `lists`, `products`, `categories`,
    `orders` (id → last body), `events` (bodies, in order), `coupon_collections`, `coupons`
    (collection id → codes), `processes`, `doi_requests` (double opt-in bodies, in order;
    `seed_contact` and `confirm_doi` play what people do in Brevo). Traffic: `requests`, `spec_violations`,
    `unsupported` (valid calls the fake does not simulate, answered 501). The state is
    `BrevoState`'s (state.py); each family of endpoints is a mixin over it.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        plan: str = "general",
        enforce_limits: bool = False,
        time_scale: float = 1.0,
        limits: Mapping[str, Iterable[tuple[int, float]]] | None = None,
        strict_attributes: bool = False,
        attributes: Mapping[str, str] | None = None,
        lists: Iterable[int] | None = None,
        check_responses: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        spec: BrevoSpec | None = None,
    ) -> None:
        """Options: `plan` picks NOTES.md §4's column; `limits` overrides families' windows
        ({"other": [(100, 3600.0)]}); `time_scale` divides every window and outage length;
        `strict_attributes` refuses contact attributes not created first; `attributes` adds
        account attributes (name → type); `lists` fixes the account's lists (None: any list id
        exists); `check_responses` checks the fake's own answers against the spec."""
        if plan not in PLAN_LIMITS:
            raise ValueError(f"plan must be one of {sorted(PLAN_LIMITS)}, not {plan!r}")
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        windows = dict(PLAN_LIMITS[plan])
        for family, override in (limits or {}).items():
            if family not in FAMILIES:
                raise ValueError(f"unknown family {family!r}; families are {FAMILIES}")
            windows[family] = tuple((int(count), float(period)) for count, period in override)
        self.api_key = api_key
        self.plan = plan
        self.enforce_limits = enforce_limits
        self.time_scale = time_scale
        self.limits: dict[str, Windows] = windows
        self.check_responses = check_responses
        self.host = host
        self.port = port
        self.spec = spec if spec is not None else load_spec(spec_path())
        self._clock = clock
        self._budgets = {family: Budget(w, time_scale) for family, w in windows.items()}

        super().__init__(strict_attributes=strict_attributes, attributes=attributes, lists=lists)

        self.requests: list[RecordedRequest] = []
        self.spec_violations: list[str] = []
        self.unsupported: list[str] = []
        self._faults: list[_Fault] = []
        self._outage: tuple[int, float | None] | None = None
        self._stall: _Match | None = None
        self._stall_applied = False
        self.latency = 0.0
        """Seconds every request waits before it is answered (slow answers; 0: none)."""
        self._released = asyncio.Event()
        self.stalled = asyncio.Event()
        """Set while at least one request is held by `stall`."""
        self.stalled_count = 0
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.started_at: float | None = None  # the clock when start() returned
        self._handlers: dict[tuple[str, str], Handler] = {
            ("POST", "/contacts"): self._create_contact,
            ("GET", "/contacts/{identifier}"): self._get_contact,
            ("PUT", "/contacts/{identifier}"): self._update_contact,
            ("DELETE", "/contacts/{identifier}"): self._delete_contact,
            ("POST", "/contacts/batch"): self._update_contacts,
            ("POST", "/contacts/import"): self._import_contacts,
            ("GET", "/contacts"): self._list_contacts,
            ("POST", "/contacts/doubleOptinConfirmation"): self._double_optin,
            ("GET", "/processes/{processId}"): self._get_process,
            ("GET", "/contacts/attributes"): self._list_attributes,
            ("POST", "/contacts/attributes/{attributeCategory}/{attributeName}"): (
                self._create_attribute
            ),
            ("GET", "/contacts/lists"): self._get_lists,
            ("POST", "/contacts/lists"): self._create_list,
            ("POST", "/contacts/lists/{listId}/contacts/add"): self._add_to_list,
            ("POST", "/contacts/lists/{listId}/contacts/remove"): self._remove_from_list,
            ("POST", "/events"): self._create_event,
            ("POST", "/events/batch"): self._create_events,
            ("POST", "/products"): self._upsert_product,
            ("POST", "/products/batch"): self._upsert_products,
            ("GET", "/products/{id}"): self._get_product,
            ("POST", "/categories"): self._upsert_category,
            ("POST", "/categories/batch"): self._upsert_categories,
            ("POST", "/orders/status"): self._upsert_order,
            ("POST", "/orders/status/batch"): self._upsert_orders,
            ("POST", "/couponCollections"): self._create_coupon_collection,
            ("GET", "/couponCollections"): self._get_coupon_collections,
            ("POST", "/coupons"): self._create_coupons,
            ("POST", "/ecommerce/activate"): self._activate_ecommerce,
            ("GET", "/account"): self._get_account,
        }

    family_of = staticmethod(family_of)

    # ----------------------------------------------------------------- lifetime

    async def __aenter__(self) -> BrevoFake:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on host:port (port 0 picks one; `port` holds the real one afterwards)."""
        from aiohttp import web

        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that gives up on a stalled request cancels it, so
        # it changes nothing (aiohttp keeps handlers running by default since 3.8.4).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        self.started_at = self._clock()

    async def close(self) -> None:
        """Stop listening; stalled requests are let go and answered 503."""
        self._closing = True
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """The API root to give the client, e.g. http://127.0.0.1:PORT/v3."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def connections(self) -> int:
        """Client connections open now; one goes once its requests are answered or dropped,
        so 0 after a client died means the fake has dealt with everything it had sent."""
        server = self._runner.server if self._runner is not None else None
        return 0 if server is None else len(server.connections)

    # ----------------------------------------------------------------- scripting

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        family: str | None = None,
        path: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `n` matching requests with `status` (429s carry rate-limit headers).

        `path` matches the path below /v3 ("/orders/status") or its template
        ("/contacts/{identifier}"). The default body is {"code": "<status phrase>", ...}.
        """
        match = _Match(family, None if path is None else path.removeprefix(API_PREFIX))
        self._faults.append(_Fault(n, status, match, body, dict(headers or {})))

    def outage(self, status: int = 503, *, duration: float | None = None) -> None:
        """Fail every request with `status` until `end_outage`, or for `duration` seconds
        (scaled by time_scale)."""
        until = None if duration is None else self._clock() + duration / self.time_scale
        self._outage = (status, until)

    def end_outage(self) -> None:
        """End an outage."""
        self._outage = None

    def stall(
        self, *, family: str | None = None, path: str | None = None, applied: bool = False
    ) -> None:
        """Hold matching requests until `release`; `stalled` is set once one is held.

        By default a request is held before Brevo acts on it, so a client that gives up
        changes nothing. With `applied`, the request is carried out first and only its answer
        is held: a client that dies then has a write Brevo did but never heard of (the
        request is recorded with the status it would have been answered)."""
        self._stall = _Match(family, None if path is None else path.removeprefix(API_PREFIX))
        self._stall_applied = applied
        if self._released.is_set():
            self._released = asyncio.Event()

    def release(self) -> None:
        """Let held requests go on (they are then answered normally) and stop holding."""
        self._stall = None
        self._released.set()
        self.stalled.clear()

    # The timeout argument is the interface tests asked for: one call, one deadline.
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once `predicate()` holds, checking again after every recorded request."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            last = [f"{r.method} {r.path} {r.status}" for r in self.requests[-5:]]
            raise TimeoutError(
                f"brevo fake: condition not met within {timeout}s; "
                f"{len(self.requests)} requests, last: {last}"
            ) from None

    def assert_no_spec_violations(self) -> None:
        """Fail when a request broke the spec or asked for something the fake cannot do."""
        problems = self.spec_violations + [f"not simulated: {u}" for u in self.unsupported]
        if problems:
            raise AssertionError("brevo fake saw bad requests:\n  " + "\n  ".join(problems))

    def summary(self) -> dict[str, Any]:
        """Counts and the request log, as the CLI writes them."""
        # Times are the fake's clock: time.monotonic, which on Linux other processes share.
        return {
            "started_at": self.started_at,
            "plan": self.plan,
            "time_scale": self.time_scale,
            "enforce_limits": self.enforce_limits,
            "families": dict(Counter(r.family for r in self.requests)),
            "paths": dict(Counter(f"{r.method} {r.route or r.path}" for r in self.requests)),
            "statuses": dict(Counter(str(r.status) for r in self.requests)),
            "over_limit": dict(Counter(r.family for r in self.requests if r.over_limit)),
            "spec_violations": list(self.spec_violations),
            "unsupported": list(self.unsupported),
            "requests": [
                {
                    "time": r.time,
                    "method": r.method,
                    "path": r.path,
                    "family": r.family,
                    "status": r.status,
                    "over_limit": r.over_limit,
                }
                for r in self.requests
            ],
        }

    # ----------------------------------------------------------------- the request path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        arrived = self._clock()
        path = request.rel_url.path
        raw_path = request.rel_url.raw_path
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            path, raw_path = path[len(API_PREFIX) :], raw_path[len(API_PREFIX) :]
            found = self.spec.route(raw_path)
        else:
            found = None
        route, raw_params = found if found is not None else (None, {})
        family = family_of(request.method, path)
        raw = await request.read()
        body, json_error = _parse_json(raw)
        status: int | None = None
        over_limit = False
        try:
            response, over_limit = await self._answer(
                request, path, route, raw_params, family, raw, body, json_error
            )
            status = response.status
            if self._stall is not None and self._stall_applied and self._stall(family, path, route):
                await self._hold()
            return response
        finally:
            self.requests.append(
                RecordedRequest(
                    time=arrived,
                    method=request.method,
                    path=path,
                    query=dict(request.query),
                    json=body,
                    status=status,
                    family=family,
                    route=route,
                    over_limit=over_limit,
                )
            )
            self._changed.set()

    async def _answer(
        self,
        request: web.Request,
        path: str,
        route: str | None,
        raw_params: dict[str, str],
        family: str,
        raw: bytes,
        body: Any,
        json_error: str | None,
    ) -> tuple[web.Response, bool]:
        """The response, and whether the request was beyond its family's limit."""
        budget = self._budgets[family]
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        fault = self._scripted_fault(family, path, route)
        if fault is None and self._holds(family, path, route):
            await self._hold()
            # A failure scripted while the request was held is its answer (Brevo failing
            # while a call is on the wire).
            fault = self._scripted_fault(family, path, route)
        if fault is not None:
            now = self._clock()
            headers = budget.exhausted(now) if fault.status == 429 else budget.headers(now)
            payload = fault.body
            if payload is None:
                payload = {"code": _code_for(fault.status), "message": "scripted failure"}
            return _respond(fault.status, payload, {**headers, **fault.headers}), False

        if self._closing:
            return _respond(503, {"code": "service_unavailable", "message": "closing"}, {}), False

        now = self._clock()
        if request.headers.get("api-key") != self.api_key:
            # NOTES.md §3: 401 unauthorized. Not counted: the limits are per account.
            answer = error(401, "unauthorized", "Key not found")
            return _respond(*answer, budget.headers(now)), False
        over_limit = not budget.take(now)
        headers = budget.headers(now)
        if over_limit and self.enforce_limits:
            windows = ", ".join(f"{n} per {p:g}s" for n, p in self.limits[family])
            answer = error(429, "too_many_requests", f"Rate limit of {family} ({windows}) exceeded")
            return _respond(*answer, headers), True

        method = request.method
        if route is None:
            problem = f"{method} {path}: no such path in Brevo's API"
            self.spec_violations.append(problem)
            return _respond(*error(404, "document_not_found", problem), headers), over_limit
        checked = self.spec.check(
            method, route, raw_params, request.query, body, bool(raw), json_error
        )
        if checked.problem is not None:
            self.spec_violations.append(f"{method} {path}: {checked.problem}")
            code = "method_not_allowed" if checked.status == 405 else "invalid_parameter"
            return _respond(*error(checked.status, code, checked.problem), headers), over_limit

        handler = self._handlers.get((method, route))
        if handler is None:
            self.unsupported.append(f"{method} {route}")
            message = f"the Brevo fake does not simulate {method} {route}"
            return _respond(*error(501, "not_implemented", message), headers), over_limit
        status, payload = handler(Call(checked.params, checked.query, body, len(raw)))
        if self.check_responses and (method, route) not in _UNCHECKED_RESPONSES:
            mismatch = self.spec.response_problem(method, route, status, payload)
            if mismatch is not None:
                self.spec_violations.append(f"fake answered {method} {path} {status}: {mismatch}")
        return _respond(status, payload, headers), over_limit

    def _scripted_fault(self, family: str, path: str, route: str | None) -> _Fault | None:
        if self._outage is not None:
            status, until = self._outage
            if until is None or self._clock() < until:
                return _Fault(1, status, _Match(), None, {})
            self._outage = None
        for fault in self._faults:
            if fault.match(family, path, route):
                fault.left -= 1
                if fault.left <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _holds(self, family: str, path: str, route: str | None) -> bool:
        """Whether `stall` (before Brevo acts) holds this request."""
        return (
            self._stall is not None and not self._stall_applied and self._stall(family, path, route)
        )

    async def _hold(self) -> None:
        released = self._released
        self.stalled_count += 1
        self.stalled.set()
        self._changed.set()
        try:
            await released.wait()
        finally:
            self.stalled_count -= 1


def _respond(status: int, payload: Any, headers: Mapping[str, str]) -> web.Response:
    from aiohttp import web

    if payload is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(payload, status=status, headers=headers)


def brevo_fake_fixture(name: str = "brevo", **options: Any) -> Any:
    """A pytest fixture yielding a started BrevoFake; a spec violation fails it at teardown.

    In conftest.py: `brevo = brevo_fake_fixture()`. Options per test:
    `@pytest.mark.parametrize("brevo", [{"enforce_limits": True}], indirect=True)`.
    """
    import pytest_asyncio

    @pytest_asyncio.fixture(name=name)
    async def fixture(request: Any) -> AsyncIterator[BrevoFake]:
        async with BrevoFake(**{**options, **getattr(request, "param", {})}) as fake:
            yield fake
        fake.assert_no_spec_violations()

    return fixture
