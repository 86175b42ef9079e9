"""A WooCommerce 10.0.2 REST fake: an aiohttp server on 127.0.0.1 that answers as WooCommerce does.

    async with WooFake(customers=30, orders=50, scheme="https") as fake:
        fake.url, fake.consumer_key, fake.consumer_secret, fake.ca_file

What it reproduces, from WooCommerce's source (reference/woocommerce/NOTES.md §2–3) and the
recordings of a real 10.0.2 store (reference/woocommerce/real-10.0.2/):

- objects shaped like the recorded ones (same keys, same types, same key order), generated
  deterministically from a seed, with a clock the test advances;
- the WordPress REST pipeline in WordPress' order: authentication (``determine_current_user``),
  key permissions (``rest_pre_dispatch``), route match, parameter validation, permission
  callback, handler, then ``_fields`` filtering (``rest_post_dispatch``);
- authentication exactly as ``WC_REST_Authentication`` does it: Basic and query-string keys only
  when ``is_ssl()``, OAuth 1.0a one-legged (HMAC-SHA1/SHA256, ±15 min, nonces kept per key and
  keyed by timestamp), unknown keys ignored, keys checked only on ``/wp-json/wc/…`` URLs;
- PHP's JSON encoding (``\\/`` and ``\\uXXXX``), so error bodies are byte-identical to the
  recordings;
- faults a shared host produces: slowness (`delay`), a per-minute budget (`max_per_minute` →
  429), scripted 5xx (`fail_next`), REST routes missing (`rest_enabled=False` → 404
  ``rest_no_route``), plain permalinks (`pretty_permalinks=False` → /wp-json/ is a 404 page),
  a proxy that strips headers (`strip_headers=("X-WP-Total", "X-WP-TotalPages")`), a host
  that drops the request's Authorization header before PHP (`strip_authorization=True`), and
  WP-Cron turned off (`wp_cron=False`, as ``DISABLE_WP_CRON`` shows in system_status).

The store's timezone is UTC (as in the recording), so local and GMT dates are equal.
CLI for benchmarks: ``python -m tests.fakes.woocommerce --orders 5000 --port-file PATH``.

Where each part lives: objects.py (versions, templates, generated values), records.py (clock,
keys, records), catalogue.py and store.py (`FakeStore`: the data, no sockets), wordpress.py
(PHP and WordPress behaviour), routes.py (the REST routes and their parameters), auth.py
(``WC_REST_Authentication``), endpoints.py and webhooks.py (what each route answers),
server.py (`WooFake`: the server and its request pipeline) and cli.py.
"""

from tests.fakes.woocommerce.records import ApiKey, FakeClock
from tests.fakes.woocommerce.server import WooFake
from tests.fakes.woocommerce.wordpress import php_json

__all__ = ["ApiKey", "FakeClock", "WooFake", "php_json"]
