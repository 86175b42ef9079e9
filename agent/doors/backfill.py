"""The backfill door: page through a store's history and feed it to the core (docs/backfill.md).

Products (then their variations), customers, orders, coupons — in that order, so orders name
products Brevo already holds. Each page is stored through `store.ingest` (one transaction) and
then checkpointed, so a killed backfill resumes where it stopped; a page stored twice is a
no-op (content ids, agent/core/events.py). Events are `historical` (no Brevo events, no
automations) and come through door BACKFILL, which lets the planner drain them through Brevo's
batch endpoints. Pages are fetched `backfill.concurrency` at a time within the site's
`rate_limit_per_minute` and stored in page order.

Before the first page, a backfill of customers or orders reads the contacts the site's Brevo
account already holds (`BrevoPrepass`) and records who left: blocklisted, unsubscribed from a
list, or outside a marketing list the backfill fills (agent/core/brevo_hooks.py). The history
it then stores never adds them back (docs/privacy.md, "Never re-subscribe").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.config import SiteConfig
from agent.core.backfill import Checkpoint, RunSpec
from agent.core.brevo_hooks import contact_suppressions
from agent.core.events import Door
from agent.core.rest import fields_for, to_events
from agent.store.ports import ConsentStore, SiteState
from agent.woocommerce.client import ParamValue, Response, WooClient
from agent.woocommerce.errors import WooNotFound

__all__ = [
    "PREPASS",
    "Backfill",
    "BackfillConflict",
    "BrevoPrepass",
    "ContactSource",
    "ProgressSink",
    "run_resources",
]

log = logging.getLogger("agent.backfill")


class ProgressSink(Protocol):
    """Where the backfill reports progress (a terminal bar, plain lines, or nothing)."""

    def update(self, name: str, done: int, total: int | None) -> None:
        """`done` of `total` objects of a resource are stored (total None: unknown)."""

    def finish(self, name: str, done: int) -> None:
        """A resource is complete."""


class _Quiet:
    def update(self, name: str, done: int, total: int | None) -> None:
        pass

    def finish(self, name: str, done: int) -> None:
        pass


class ContactSource(Protocol):
    """Brevo's contacts, a page at a time (agent/forward/brevo.py `ContactPages`)."""

    async def page(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The contacts from `offset` on, oldest first, and the account's contact count."""
        ...


PREPASS = "brevo contacts"  # the pre-pass's line in the progress report


@dataclass(slots=True)
class BrevoPrepass:
    """Before a backfill stores anything: record, through the `ConsentStore` port, who among
    the contacts Brevo already holds must not be (re)added to a list (contract: blocklisted →
    every list; `listUnsubscribed` → those lists; not in a marketing list the backfill fills →
    that list, reason `absent_at_backfill`). `found` counts them by reason."""

    contacts: ContactSource
    store: ConsentStore
    clock: Callable[[], float] = time.time
    found: dict[str, int] = field(default_factory=dict)
    checked: int = 0

    async def run(self, site: SiteConfig, progress: ProgressSink) -> None:
        """Page through every contact of the site's Brevo account."""
        account = site.brevo.account
        lists = site.woo.lists
        # The lists a backfill adds people to; abandoned_cart is the stream's alone (carts),
        # and the agent itself takes people out of it when a cart is recovered.
        filled = [i for i in (lists.all_customers, lists.buyers) if i is not None]
        now = self.clock()  # each suppression's `since`: a later subscription outweighs it
        offset = 0
        progress.update(PREPASS, 0, None)
        while True:
            page, total = await self.contacts.page(offset)
            for contact in page:
                for found in contact_suppressions(contact, filled):
                    await self.store.suppress(
                        account, found.email, found.list_ids, found.reason, now
                    )
                    self.found[found.reason] = self.found.get(found.reason, 0) + 1
            offset += len(page)
            self.checked = offset
            progress.update(PREPASS, offset, max(total, offset))
            if not page or offset >= total > 0:  # no count: until an empty page
                break
        progress.finish(PREPASS, offset)
        log.info(
            "site %s: %d contacts already in brevo checked: %s",
            site.id,
            offset,
            ", ".join(f"{n} {reason}" for reason, n in sorted(self.found.items())) or "none left",
        )


class BackfillConflict(Exception):
    """An unfinished backfill with other arguments exists; resume it or restart."""


def run_resources(resources: Sequence[str]) -> list[str]:
    """The run's steps: variations follow products (they are listed per variable product)."""
    out: list[str] = []
    for resource in resources:
        out.append(resource)
        if resource == "products":
            out.append("variations")
    return out


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _items(response: Response) -> list[dict[str, Any]]:
    body = response.json
    return [i for i in body if isinstance(i, dict)] if isinstance(body, list) else []


class Backfill:
    """One site's backfill. `await Backfill(...).run()` returns objects stored per resource."""

    def __init__(
        self,
        store: SiteState,
        site: SiteConfig,
        client: WooClient,
        *,
        resources: Sequence[str],
        since: str | None = None,
        restart: bool = False,
        once: bool = False,
        progress: ProgressSink | None = None,
        prepass: BrevoPrepass | None = None,
    ) -> None:
        self.store = store
        self.site = site
        self.client = client
        self.resources = list(resources)
        self.since = since
        self.restart = restart
        self.once = once
        self.already_done = False
        self.already_stored = False
        self.progress: ProgressSink = progress or _Quiet()
        # None: Brevo is in dry-run (no api_key), there is no account to read.
        self.prepass = prepass
        self.settings = site.woo.backfill
        self.per_page = self.settings.per_page
        self.stored: dict[str, int] = {}
        self._meta = f"backfill:{site.id}"

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> dict[str, int]:
        """Store every resource in order; resumes an unfinished identical run.

        A run goes running → stored (every page in the store) → done (`finish()`, once
        forwarded). The same command after "stored" stores nothing again (`already_stored`):
        a backfill killed while forwarding does not list the store a second time.
        """
        spec = RunSpec(tuple(self.resources), self.since)
        previous = await self.store.get_meta(f"{self._meta}:run")
        state = await self.store.get_meta(f"{self._meta}:state")
        steps = run_resources(self.resources)
        same = previous is not None and RunSpec.load(previous) == spec
        if same and not self.restart:
            if state == "done" and self.once:
                # A nightly timer re-runs the command: the finished backfill is not redone.
                self.already_done = True
                return {}
            if state == "stored":
                self.already_stored = True
                return {}
        if previous is None or state in ("done", "stored") or self.restart:
            for step in steps:
                await self.store.set_watermark(
                    self.site.id, f"backfill:{step}", Checkpoint().dump()
                )
            await self.store.set_meta(f"{self._meta}:run", spec.dump())
            await self.store.set_meta(f"{self._meta}:prepass", "")
            await self.store.set_meta(f"{self._meta}:state", "running")
        elif not same:
            assert previous is not None
            old = RunSpec.load(previous)
            raise BackfillConflict(
                f"site {self.site.id}: an unfinished backfill of {', '.join(old.resources)}"
                f"{' since ' + old.since if old.since else ''} exists. Run that same command to "
                "resume it, or add --restart to start this one from the beginning."
            )
        else:
            log.info("site %s: resuming the unfinished backfill", self.site.id)
        await self._check_brevo()
        for step in steps:
            if step == "variations":
                await self._variations()
            else:
                await self._listing(step)
        await self.store.set_meta(f"{self._meta}:state", "stored")
        return dict(self.stored)

    async def _check_brevo(self) -> None:
        """The pre-pass, for a run that may add people to lists (customers or orders); once
        per run: a resumed run keeps what the first one recorded."""
        if not {"customers", "orders"} & set(self.resources):
            return
        done = await self.store.get_meta(f"{self._meta}:prepass")
        if done:
            self.progress.finish(PREPASS, int(done))
            return
        if self.prepass is None:
            log.warning(
                "site %s: brevo is in dry-run (no api_key): the check of the contacts already in"
                " brevo (blocklisted, unsubscribed, outside the lists) is skipped",
                self.site.id,
            )
            return
        await self.prepass.run(self.site, self.progress)
        await self.store.set_meta(f"{self._meta}:prepass", str(self.prepass.checked))

    async def finish(self) -> None:
        """Everything stored has been handed on (forwarded, or left to a running agent)."""
        await self.store.set_meta(f"{self._meta}:state", "done")

    async def _checkpoint(self, step: str) -> Checkpoint:
        return Checkpoint.load(await self.store.get_watermark(self.site.id, f"backfill:{step}"))

    async def _save(self, step: str, cp: Checkpoint) -> None:
        await self.store.set_watermark(self.site.id, f"backfill:{step}", cp.dump())

    def _fields(self, resource: str) -> str | None:
        if not self.settings.fields:
            return None
        return ",".join(fields_for(resource, self.site.woo.customer_mapping))

    async def _store(self, resource: str, items: list[dict[str, Any]]) -> int:
        if resource == "customers" and self.since:
            # wc/v3 cannot filter customers by date (NOTES §2.1): filtered here instead.
            items = [c for c in items if str(c.get("date_modified_gmt") or "") >= self.since]
        events, rejected = to_events(resource, items, door=Door.BACKFILL, historical=True)
        if events or rejected:
            await self.store.ingest(self.site.id, events, rejected)
        return len(events)

    # -- a paged listing ------------------------------------------------------------------

    async def _fetch(self, resource: str, params: Mapping[str, ParamValue], page: int) -> Response:
        query = dict(params)
        query.update(per_page=self.per_page, page=page)
        fields = self._fields(resource)
        if fields:
            query["_fields"] = fields
        return await self.client.get(resource, query)

    async def _listing(self, resource: str) -> None:
        cp = await self._checkpoint(resource)
        if cp.finished:
            self.progress.finish(resource, cp.done_items)
            return
        params: dict[str, ParamValue] = {"orderby": "id", "order": "asc"}
        if self.since and resource != "customers":
            params.update(modified_after=self.since, dates_are_gmt=True)
        page = cp.resume_page()
        done = cp.resume_done()
        total, total_pages = cp.total, cp.total_pages
        self.progress.update(resource, done, total)
        inflight: dict[int, asyncio.Task[Response]] = {}
        next_fetch = page
        try:
            while True:
                # Up to `concurrency` pages in flight once the page count is known; one at a
                # time when a proxy stripped X-WP-TotalPages (then a short page ends it).
                width = self.settings.concurrency if total_pages is not None else 1
                last = total_pages if total_pages is not None else page
                while len(inflight) < width and next_fetch <= max(last, page):
                    inflight[next_fetch] = asyncio.create_task(
                        self._fetch(resource, params, next_fetch)
                    )
                    next_fetch += 1
                response = await inflight.pop(page)
                items = _items(response)
                header_total = _header_int(response.headers, "X-WP-Total")
                header_pages = _header_int(response.headers, "X-WP-TotalPages")
                if header_total is not None:
                    total = header_total
                total_pages = header_pages
                stored = await self._store(resource, items)
                done += stored
                finished = (
                    not items
                    or len(items) < self.per_page
                    or (total_pages is not None and page >= total_pages)
                )
                cp = Checkpoint(
                    next_page=page + 1,
                    total_pages=total_pages,
                    total=total,
                    done_items=done,
                    finished=finished,
                    last_page_items=stored,
                )
                await self._save(resource, cp)
                self.stored[resource] = self.stored.get(resource, 0) + stored
                self.progress.update(resource, done, total)
                if finished:
                    break
                page += 1
        finally:
            for task in inflight.values():
                task.cancel()
            for task in inflight.values():
                with contextlib.suppress(BaseException):
                    await task
        self.progress.finish(resource, done)
        log.info("site %s: backfill of %s done: %d stored", self.site.id, resource, done)

    # -- variations: one listing per variable product -------------------------------------

    async def _variable_products(self) -> list[int]:
        params: dict[str, ParamValue] = {"orderby": "id", "order": "asc", "type": "variable"}
        ids: list[int] = []
        async for page in self.client.iter_pages(
            "products", params, fields=["id"], per_page=self.per_page
        ):
            ids.extend(i["id"] for i in page.items if isinstance(i.get("id"), int))
        return ids

    async def _variations(self) -> None:
        cp = await self._checkpoint("variations")
        if cp.finished:
            self.progress.finish("variations", cp.done_items)
            return
        parents = list(cp.parents) or await self._variable_products()
        # The checkpoint keeps the parents list, so a resumed run walks the same one.
        index = cp.resume_page() - 1 if cp.parents else 0
        done = cp.done_items
        fields = fields_for("variations", {}) if self.settings.fields else None
        self.progress.update("variations", done, None)
        for i in range(index, len(parents)):
            parent = parents[i]
            try:
                async for page in self.client.iter_pages(
                    f"products/{parent}/variations",
                    {"orderby": "id", "order": "asc"},
                    fields=fields,
                    per_page=self.per_page,
                ):
                    for item in page.items:
                        item.setdefault("parent_id", parent)  # older bodies lack it
                    stored = await self._store("variations", page.items)
                    done += stored
                    self.stored["variations"] = self.stored.get("variations", 0) + stored
            except WooNotFound:
                pass  # deleted since the listing
            await self._save(
                "variations",
                Checkpoint(
                    next_page=i + 2,
                    done_items=done,
                    parents=tuple(parents),
                    finished=i == len(parents) - 1,
                ),
            )
            self.progress.update("variations", done, None)
        if not parents:
            await self._save("variations", Checkpoint(finished=True))
        self.progress.finish("variations", done)
