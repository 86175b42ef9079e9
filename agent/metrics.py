"""Counters and gauges, rendered in Prometheus' text format at /metrics. No secret goes in a label."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence

__all__ = ["Metrics", "count_ingest"]

_HELP = {
    "woobrevo_events_in_total": ("counter", "Events received, by door and site."),
    "woobrevo_acks_total": ("counter", "Batches acked on the stream, by site."),
    "woobrevo_rejected_total": (
        "counter",
        "Events rejected (stored as dead letters), by door and site.",
    ),
    "woobrevo_dead_letters_total": ("counter", "Brevo writes refused for good, by kind."),
    "woobrevo_brevo_calls_total": ("counter", "Brevo requests, by family, endpoint and status."),
    "woobrevo_rate_limit_waits_total": (
        "counter",
        "Times the forwarder waited for a Brevo rate limit.",
    ),
    "woobrevo_rate_limit_wait_seconds_total": (
        "counter",
        "Seconds spent waiting for Brevo limits.",
    ),
    "woobrevo_queue_depth": ("gauge", "Pending Brevo jobs, by account and kind."),
    "woobrevo_inbox_depth": ("gauge", "Events stored but not processed yet."),
    "woobrevo_inbox_pruned_total": (
        "counter",
        "Processed events deleted from the inbox after agent.inbox_retention.",
    ),
    "woobrevo_stream_connections": ("gauge", "Open websocket connections, by site."),
    "woobrevo_site_mode": ("gauge", "1 for the site's current mode (stream or polling)."),
    # The replicas sharing the store (agent/store/postgres/cluster.py), read at scrape time.
    "woobrevo_cluster_replicas": (
        "gauge",
        "Replicas in the store's table, by state (alive, or stale: not seen within"
        " agent.replica_timeout); SQLite: this agent alone.",
    ),
    "woobrevo_replica_claims": ("gauge", "Brevo jobs each replica holds in flight, by replica."),
    "woobrevo_requests_fenced_total": (
        "counter",
        "Brevo requests not sent because this replica's heartbeat lapsed after their jobs were"
        " claimed (another replica may hold them), by family; the jobs went back to the queue.",
    ),
    # The doors (agent/doors/, agent/http.py).
    "woobrevo_events_replayed_total": (
        "counter",
        "Events received again (already stored), by door and site.",
    ),
    "woobrevo_stream_refused_total": (
        "counter",
        "Stream handshakes refused before the upgrade, by reason.",
    ),
    "woobrevo_stream_protocol_errors_total": (
        "counter",
        "Stream connections closed for a protocol error, by site and code.",
    ),
    "woobrevo_webhook_requests_total": ("counter", "Webhook door requests, by site and outcome."),
    "woobrevo_brevo_webhook_requests_total": (
        "counter",
        "Brevo webhook door requests, by site and outcome.",
    ),
    "woobrevo_brevo_webhook_events_total": (
        "counter",
        "Brevo webhook events, by site, event and outcome (recorded or ignored).",
    ),
    "woobrevo_pending_jobs": ("gauge", "Brevo jobs not done yet, by site (read at scrape time)."),
    "woobrevo_dead_letters_open": ("gauge", "Open dead letters, by site (read at scrape time)."),
    # Abandoned carts (agent/core/carts.py, agent/store/carts.py), read at scrape time.
    "woobrevo_carts": (
        "gauge",
        "Carts by site and state: active now; abandoned, recovered, expired since the start.",
    ),
    "woobrevo_carts_recovered_revenue": (
        "gauge",
        "Total of the orders that recovered an abandoned cart, by site.",
    ),
    "woobrevo_carts_recovery_rate": ("gauge", "Recovered carts / abandoned carts, by site."),
    # Erasures (privacy.erase: agent/core/privacy.py, agent/store/privacy.py).
    "woobrevo_erasures_total": (
        "counter",
        "Erasures finished, by site and outcome (done, or refused by Brevo: purged anyway).",
    ),
    "woobrevo_erasures": (
        "gauge",
        "Erasures by site and state: done since the start, pending (read at scrape time).",
    ),
    # The polling door (agent/doors/poller.py).
    "woobrevo_mode_changes_total": ("counter", "Stream/polling switches, by site and new mode."),
    "woobrevo_poll_rounds_total": ("counter", "Polling rounds completed, by site."),
    "woobrevo_poll_errors_total": ("counter", "Polling rounds or scans the store failed, by site."),
    # agent/process/worker.py
    "woobrevo_worker_restarts_total": (
        "counter",
        "Times the worker process died and was restarted.",
    ),
}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """A tiny thread-safe registry: `inc`, `set`, `render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = value

    def get(self, name: str, **labels: str) -> float:
        """Read one series (tests, /status)."""
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def series(self) -> list[tuple[str, dict[str, str], float]]:
        """Every series as (name, labels, value): what the worker process reports."""
        with self._lock:
            return [
                (name, dict(labels), value)
                for name, values in self._values.items()
                for labels, value in values.items()
            ]

    def render(self, also: Sequence[tuple[str, dict[str, str], float]] = ()) -> str:
        """Prometheus text exposition format 0.0.4; `also` adds another process's series
        (the worker's: agent/process/worker.py), summed with ours where a series is in both."""
        lines: list[str] = []
        with self._lock:
            values = {name: dict(series) for name, series in self._values.items()}
        for name, extra, value in also:
            key = tuple(sorted(extra.items()))
            series = values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value
        for name in sorted(values):
            kind, help_text = _HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(values[name].items()):
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
                lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def count_ingest(
    metrics: Metrics, door: str, site: str, *, events: int, new: int, rejected: int
) -> None:
    """The one way a door counts what it stored: events in, replays, refusals (every door)."""
    if events:
        metrics.inc("woobrevo_events_in_total", events, door=door, site=site)
    if events > new:
        metrics.inc("woobrevo_events_replayed_total", events - new, door=door, site=site)
    if rejected:
        metrics.inc("woobrevo_rejected_total", rejected, door=door, site=site)
