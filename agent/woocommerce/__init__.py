"""WooCommerce's REST API, as the poller, backfill, webhooks setup and doctor call it."""
