"""The stream door's read slots (agent/doors/stream.py, `agent.stream.read_slots`): a burst from many
connections at once reads only a few messages at a time, loses nothing, acks each batch once
after its commit, and never leaves a connection waiting for good."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from agent.config import Config
from agent.doors import stream
from tests.agent.doorkit import (
    TOKENS,
    UNIT,
    batch,
    client,
    config_data,
    event,
    hello,
    inbox_ids,
    make_config,
    running,
)
from tests.kit import tls_trust, until


class SpySlots(stream._ReadSlots):
    """The real slots, recording the most ever taken and ever waiting, and every connection
    that waited."""

    def __init__(self, size: int, per_site: int) -> None:
        super().__init__(size, per_site)
        self.most_taken = 0
        self.most_waiting = 0
        self.waited: list[Any] = []
        SpySlots.last = self

    last: SpySlots

    def take(self, conn: Any) -> bool:
        got = super().take(conn)
        if not got:
            self.waited.append(conn)
        self.most_taken = max(self.most_taken, self.taken)
        self.most_waiting = max(self.most_waiting, len(self.waiting))
        return got


@pytest.fixture
def slots(monkeypatch: pytest.MonkeyPatch) -> type[SpySlots]:
    monkeypatch.setattr(stream, "_ReadSlots", SpySlots)
    return SpySlots


def big_batch(name: str, prefix: str, n: int = 30) -> str:
    """An `events` message of n REST orders (~3 KB each): many reads of SLOT_READ bytes."""
    return batch(name, [event(f"{prefix}-{i}", 1000 + i) for i in range(n)])


async def send_partly(ws: ClientConnection, text: str) -> bytes:
    """Write the first half of a text frame; returns the rest, for `ws.transport.write`."""
    ws.protocol.send_text(text.encode())
    raw = b"".join(ws.protocol.data_to_send())
    ws.transport.write(raw[: len(raw) // 2])
    return raw[len(raw) // 2 :]


async def burst(
    wss: list[ClientConnection], rounds: int, per_batch: int
) -> list[list[dict[str, Any]]]:
    """Every connection sends all its batches at once (the later ones pipelined), then reads
    their acks; connection i's batches are `c{i}-r{round}`."""

    async def one(i: int, ws: ClientConnection) -> list[dict[str, Any]]:
        names = [f"c{i}-r{r}" for r in range(rounds)]
        for name in names:
            await ws.send(big_batch(name, name, per_batch))
        return [json.loads(await ws.recv()) for _ in names]

    return await asyncio.gather(*(one(i, ws) for i, ws in enumerate(wss)))


def check_burst(cfg: Config, acks: list[list[dict[str, Any]]], rounds: int, per_batch: int) -> None:
    """Each batch acked once, in order, every event accepted and stored once."""
    for i, got in enumerate(acks):
        assert [a["batch"] for a in got] == [f"c{i}-r{r}" for r in range(rounds)]
        for a in got:
            assert a["type"] == "ack" and a["rejected"] == []
            assert a["accepted"] == [f"{a['batch']}-{n}" for n in range(per_batch)]
    stored = inbox_ids(cfg)
    assert len(stored) == len(set(stored)) == len(acks) * rounds * per_batch


async def test_burst_with_two_slots_acks_every_batch_once(
    tmp_path: Path, slots: type[SpySlots]
) -> None:
    cfg = make_config(tmp_path, read_slots=2)
    conns, rounds, per_batch = 16, 3, 20
    async with running(cfg) as app, contextlib.AsyncExitStack() as stack:
        wss = [
            await stack.enter_async_context(client(app, TOKENS["ab"[i % 2]])) for i in range(conns)
        ]
        for ws in wss:
            await hello(ws)

        acks = await burst(wss, rounds, per_batch)
        await asyncio.gather(*(ws.close() for ws in wss))
        await until(lambda: slots.last.taken == 0)
    check_burst(cfg, acks, rounds, per_batch)
    # The cap held, and it did make connections wait.
    assert slots.last.most_taken == 2
    assert slots.last.most_waiting > 0
    assert not slots.last.waiting


async def test_waiting_connection_is_not_closed_by_keepalive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slots: type[SpySlots]
) -> None:
    """One slot, held by a connection whose handler waits for a parse slot behind a commit the
    test holds; another connection waits for it longer than ping_interval + ping_timeout."""
    monkeypatch.setattr(stream, "MAX_PARSED_BATCHES", 1)
    cfg = make_config(
        tmp_path,
        read_slots=1,
        ping_interval=f"{int(100 * UNIT)}ms",
        ping_timeout=f"{int(200 * UNIT)}ms",
    )
    async with running(cfg) as app:
        real_ingest = app.store.ingest
        release = asyncio.Event()

        async def held_ingest(site: str, events: Any, rejected: Any = ()) -> Any:
            await release.wait()
            return await real_ingest(site, events, rejected=rejected)

        app.store.ingest = held_ingest  # type: ignore[method-assign]
        async with client(app, TOKENS["a"]) as a, client(app, TOKENS["b"]) as b:
            await hello(a)
            await hello(b)
            await a.send(big_batch("a1", "a1"))  # committing (held): the one parse slot
            await a.send(big_batch("a2", "a2"))  # read, waits for the parse slot: the read slot
            await until(lambda: slots.last.taken == 1 and slots.last.most_taken == 1)
            await b.send(big_batch("b1", "b1"))  # waits for the read slot
            await until(lambda: len(slots.last.waiting) == 1)
            await asyncio.sleep(0.6 * UNIT)  # two ping rounds: b's pongs sit behind its batch
            assert len(slots.last.waiting) == 1 and app.status.site("b").stream.connections == 1
            release.set()
            assert [json.loads(await a.recv())["batch"] for _ in range(2)] == ["a1", "a2"]
            assert json.loads(await b.recv())["batch"] == "b1"
    assert len(inbox_ids(cfg)) == 90


async def test_stalled_reader_is_closed_and_the_waiting_one_proceeds(
    tmp_path: Path, slots: type[SpySlots]
) -> None:
    """The slot holder stops mid-message and answers no ping: keepalive closes it (1011), and
    the waiting connection gets the slot; a waiting connection that went away gives up its
    place (aborted by the agent: at once; by the peer: when its turn comes)."""
    cfg = make_config(
        tmp_path,
        read_slots=1,
        ping_interval=f"{int(200 * UNIT)}ms",
        ping_timeout=f"{int(300 * UNIT)}ms",
    )
    async with running(cfg) as app:
        async with (
            client(app, TOKENS["a"], ping_interval=None) as stalled,
            client(app, TOKENS["b"]) as gone,
            client(app, TOKENS["b"]) as aborted,
            client(app, TOKENS["b"]) as waiting,
        ):
            for ws in (stalled, gone, aborted, waiting):
                await hello(ws)
            await send_partly(stalled, big_batch("s1", "s1"))
            stalled.transport.pause_reading()  # never sees a ping: never answers one
            await until(lambda: slots.last.taken == 1)
            for n, ws in enumerate((gone, aborted, waiting), 1):
                await ws.send(big_batch(f"w{n}", f"w{n}"))
                await until(lambda n=n: len(slots.last.waiting) == n)  # type: ignore[misc]
            gone.transport.abort()  # the peer leaves; the paused agent side notices later
            server_side = slots.last.waited[1]
            server_side.transport.abort()  # the agent drops one that waits: its place is freed
            await until(lambda: server_side not in slots.last.waiting)
            assert len(slots.last.waiting) == 2
            ack = json.loads(await waiting.recv())  # after the keepalive closed `stalled`
            assert ack["batch"] == "w3"
            assert slots.last.waiting == {}
            stalled.transport.resume_reading()
            with pytest.raises(ConnectionClosed):
                await stalled.recv()
            assert stalled.close_code == 1011
        await until(lambda: slots.last.taken == 0)
    stored = {e.split("-")[0] for _, e in inbox_ids(cfg)}
    # w1's peer reset the connection: its batch may have been read (and stored, never acked).
    assert "w3" in stored and not stored & {"s1", "w2"}


async def test_tls_connections_read_in_slot_sized_pieces(
    tmp_path: Path, slots: type[SpySlots]
) -> None:
    """wss:// (agent.tls): asyncio's TLS layer reads each connection into a buffer of the
    door's read size, not its own 256 KiB, and a burst keeps to the read slots as over plain
    TCP: waiting connections stop reading (ciphertext waits in the kernel), nothing is lost."""
    data = config_data(tmp_path, tls=True, read_slots=2)
    trust = tls_trust(data)
    cfg = Config.model_validate(data)
    conns, rounds, per_batch = 8, 2, 30
    async with running(cfg) as app, contextlib.AsyncExitStack() as stack:
        wss = [
            await stack.enter_async_context(client(app, TOKENS["ab"[i % 2]], ssl=trust))
            for i in range(conns)
        ]
        for ws in wss:
            await hello(ws)
        server_side = list(app.stream._digests)
        assert len(server_side) == conns

        def tls_buffers() -> list[int]:
            # This Python's asyncio has what the door sizes (else it would read 256 KiB each).
            assert all(c._tls is not None for c in server_side)
            return [len(c._tls._ssl_buffer) for c in server_side]

        assert tls_buffers() == [stream.WAITING_READ] * conns

        acks = await burst(wss, rounds, per_batch)
        await until(lambda: slots.last.taken == 0)
        assert tls_buffers() == [stream.WAITING_READ] * conns  # back to the waiting size
        await asyncio.gather(*(ws.close() for ws in wss))
    check_burst(cfg, acks, rounds, per_batch)
    assert slots.last.most_taken == 2
    assert slots.last.most_waiting > 0
