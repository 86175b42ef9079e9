#!/usr/bin/env bash
# The plugin's benchmarks in one go: sets up the test WordPress (tests/php/run.sh --setup-only:
# private MariaDB, Debian's WordPress, the plugin, the WooCommerce double), runs
#   bench/plugin_order_save.php                     plugin on vs off on an order save
#   bench/plugin_cart_view.php                      plugin on vs off on a page view over an unchanged cart
#   bench/plugin_shipper_throughput.php             PHP client → agent, no WordPress (wire), 1 and 4 batches in flight
#   bench/plugin_shipper_throughput.php --shipper   WooBrevo_Shipper::tick() in WordPress → agent, as shipped
#                                                   (new) and the previous path (old), in ABBA order
# and stops MariaDB at exit. Each prints one JSON line. Usage: bash bench/plugin_run.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="$(mktemp /tmp/woobrevo-bench-env.XXXXXX)"
trap 'bash "$REPO/tests/php/run.sh" --stop --env-file "$ENV_FILE" >/dev/null 2>&1 || true; rm -f "$ENV_FILE"' EXIT
bash "$REPO/tests/php/run.sh" --setup-only --env-file "$ENV_FILE" >&2
WOOBREVO_WP_DIR="$(sed -n 's/^WOOBREVO_WP_SINGLE=//p' "$ENV_FILE")"
export WOOBREVO_WP_DIR
cd "$REPO"
php bench/plugin_order_save.php --orders 50 --rounds 20
php bench/plugin_cart_view.php --views 200 --rounds 20
php bench/plugin_shipper_throughput.php --events 10000
php bench/plugin_shipper_throughput.php --events 10000 --pipeline 4
php bench/plugin_shipper_throughput.php --shipper --events 3000 --variants new,old,old,new
