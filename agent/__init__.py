"""WooBrevo's agent: WooCommerce events in, Brevo calls out, nothing lost on the way.

The code map follows an event (docs/architecture.md has the picture):

- `doors/`       three ways in: the plugin's websocket (`stream`), native webhooks (`webhooks`),
                 REST polling and backfill (`poller`, `backfill`); each only parses and ingests.
- `store/`       the durable inbox, jobs, dedupe state, cart timers and dead letters: `ports.py`
                 names what each stage may ask of it, `sqlite.py` and its modules implement it.
- `process/`     inbox rows through the core's decisions into Brevo jobs (`processor`), and the
                 niced worker process that runs it beside the doors (`worker`).
- `core/`        every decision, pure (data in, data out, no I/O): parsing, lifecycle, mapping,
                 dedupe, aggregates, planning, retry reactions, the poller's mode machine,
                 the abandoned carts' state machine (`carts`).
- `forward/`     jobs out to Brevo, one worker per account (`forwarder`), over `brevo`.
- `woocommerce/` the store's REST API (signing, budgets, errors) for the poller, backfill and tools.
- `cli/`         the operator's commands; `app.py` wires one running agent (the only place that
                 builds everything); `config.py`, `status.py`, `metrics.py`, `http.py` (health,
                 metrics, /status), `tokens.py`, `errors.py` sit beside the path.
"""

# The one version of the agent and the plugin: pyproject.toml reads it (dynamic metadata), and
# wp-plugin/woobrevo.php and readme.txt carry the same (tests/test_version.py; bin/bump-version).
__version__ = "0.1.0"
