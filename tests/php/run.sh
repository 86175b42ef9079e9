#!/usr/bin/env bash
# The PHP test command: installs what is missing (Debian packages only), starts a private MariaDB,
# installs WordPress single-site and multisite from Debian's `wordpress` package into temp folders,
# runs the checks (php -l, phpcs, bin/php-checks) and the PHPUnit suites unit, integration and
# multisite, and prints a summary. Exit status is non-zero on any failure.
#
# Usage:
#   tests/php/run.sh                                   everything; MariaDB stopped and temp files removed at exit
#   tests/php/run.sh --suite unit [--suite multisite]  only these suites (checks still run)
#   tests/php/run.sh --no-checks                       skip php -l / phpcs / bin/php-checks
#   tests/php/run.sh --setup-only --env-file PATH      install + start MariaDB + install WordPress, leave it
#                                                      running, write KEY=value lines to PATH (for tests/e2e)
#   tests/php/run.sh --stop [--env-file PATH]          stop what --setup-only started, remove its temp folder
#   tests/php/run.sh -- ARGS                           extra arguments for phpunit (e.g. --filter Outbox)
#
# Environment: WOOBREVO_WC_DIR=/path/to/woocommerce loads a real WooCommerce instead of the test double;
# WOOBREVO_WP_CORE_DIR=/path/to/wordpress copies that WordPress core instead of Debian's /usr/share/wordpress
# (for a WooCommerce that needs a newer WordPress; docs/plugin-testing.md); WOOBREVO_PHP_STATE=DIR uses DIR
# as the temp folder; WOOBREVO_KEEP=1 keeps it (and MariaDB stops anyway). Nothing is downloaded.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/php"
T0=$(date +%s)

mode=run
env_file=""
checks=1
suites=()
phpunit_args=()
while [ $# -gt 0 ]; do
	case "$1" in
		--setup-only) mode=setup ;;
		--stop) mode=stop ;;
		--env-file) env_file="$2"; shift ;;
		--env-file=*) env_file="${1#*=}" ;;
		--suite) suites+=("$2"); shift ;;
		--no-checks) checks=0 ;;
		--) shift; phpunit_args=("$@"); break ;;
		-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
		*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ ${#suites[@]} -eq 0 ] && suites=(unit integration multisite)

WP_CORE="${WOOBREVO_WP_CORE_DIR:-/usr/share/wordpress}"
if [ "$mode" != stop ]; then
	if [ -n "${WOOBREVO_WP_CORE_DIR:-}" ] && [ ! -f "$WP_CORE/wp-includes/version.php" ]; then
		echo "run.sh: WOOBREVO_WP_CORE_DIR=$WP_CORE is not a WordPress core directory" >&2; exit 2
	fi
	if [ -n "${WOOBREVO_WC_DIR:-}" ]; then
		[ -f "$WOOBREVO_WC_DIR/woocommerce.php" ] || { echo "run.sh: WOOBREVO_WC_DIR=$WOOBREVO_WC_DIR has no woocommerce.php" >&2; exit 2; }
		WOOBREVO_WC_DIR="$(cd "$WOOBREVO_WC_DIR" && pwd)"; export WOOBREVO_WC_DIR # The symlink needs an absolute path.
	fi
fi

log() { printf '[php %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ---------------------------------------------------------------------------------------------
# --stop: read the state folder from the env file (or WOOBREVO_PHP_STATE) and stop its MariaDB.
stop_db() {
	local state="$1" pid
	if [ -f "$state/mysqld.pid" ]; then
		pid=$(cat "$state/mysqld.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
		fi
	fi
}
if [ "$mode" = stop ]; then
	state="${WOOBREVO_PHP_STATE:-}"
	if [ -n "$env_file" ] && [ -f "$env_file" ]; then
		state=$(sed -n 's/^WOOBREVO_PHP_STATE=//p' "$env_file" | tail -1)
	fi
	[ -n "$state" ] || { echo "run.sh --stop: no state folder (give --env-file or WOOBREVO_PHP_STATE)" >&2; exit 2; }
	stop_db "$state"
	case "$state" in /tmp/*|/var/tmp/*) rm -rf "$state" ;; esac
	log "stopped MariaDB and removed $state"
	exit 0
fi

# ---------------------------------------------------------------------------------------------
# 1. Packages: install only what is missing; apt-get update once, only when something is.
packages=(php-cli php-mysql php-xml php-mbstring php-curl phpunit wordpress mariadb-server php-codesniffer openssl)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# Recommends would pull a web server and more; the tests need none of it.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	log "packages installed"
else
	log "packages present"
fi

# ---------------------------------------------------------------------------------------------
# 2. A private MariaDB: own datadir, socket and port in a temp folder; stopped by a trap.
if [ -n "${WOOBREVO_PHP_STATE:-}" ]; then
	STATE="$WOOBREVO_PHP_STATE"; mkdir -p "$STATE"
else
	STATE="$(mktemp -d /tmp/woobrevo-php.XXXXXX)"
fi
SOCK="$STATE/mysqld.sock"
DB_USER=woobrevo
DB_PASS=woobrevo

cleanup() {
	local rc=$?
	stop_db "$STATE"
	if [ "${WOOBREVO_KEEP:-0}" != 1 ]; then rm -rf "$STATE"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	php -r '$s = stream_socket_server("tcp://127.0.0.1:0"); $n = stream_socket_get_name($s, false); echo substr($n, strrpos($n, ":") + 1);'
}
PORT=$(free_port)

log "starting MariaDB in $STATE (port $PORT)"
# Its own tmpdir too: bootstrap temp tables in a shared /tmp can clash with another run's.
mkdir -p "$STATE/db" "$STATE/tmp"
mariadb-install-db --no-defaults --datadir="$STATE/db" --tmpdir="$STATE/tmp" --user=root --auth-root-authentication-method=socket \
	--skip-test-db >"$STATE/install-db.log" 2>&1 || { cat "$STATE/install-db.log"; exit 1; }
# Durability off: this database lives for one run.
mariadbd --no-defaults --datadir="$STATE/db" --tmpdir="$STATE/tmp" --socket="$SOCK" --port="$PORT" --bind-address=127.0.0.1 \
	--pid-file="$STATE/mysqld.pid" --user=root --skip-log-bin --skip-name-resolve \
	--innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
	--log-error="$STATE/mysqld.err" >/dev/null 2>&1 &
for i in $(seq 1 300); do
	mariadb-admin --no-defaults --socket="$SOCK" -uroot ping >/dev/null 2>&1 && break
	[ "$i" = 300 ] && { echo "MariaDB did not start:"; cat "$STATE/mysqld.err"; exit 1; }
	sleep 0.1
done
mariadb --no-defaults --socket="$SOCK" -uroot <<SQL
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON *.* TO '$DB_USER'@'localhost';
GRANT ALL ON *.* TO '$DB_USER'@'127.0.0.1';
DROP DATABASE IF EXISTS wp_single; CREATE DATABASE wp_single CHARACTER SET utf8mb4;
DROP DATABASE IF EXISTS wp_multi;  CREATE DATABASE wp_multi  CHARACTER SET utf8mb4;
SQL
log "MariaDB up"

# ---------------------------------------------------------------------------------------------
# 3. WordPress: a writable copy of Debian's /usr/share/wordpress (or of WOOBREVO_WP_CORE_DIR) with our own
#    wp-config.php (Debian's reads /etc/wordpress/config-*.php, which we never depend on), the plugin
#    symlinked in, and the WooCommerce double (or a real WooCommerce) loaded.
install_wp() {
	local dir="$1" db="$2" kind="$3"
	rm -rf "$dir"
	cp -a "$WP_CORE/." "$dir"
	rm -f "$dir/wp-config.php"
	mkdir -p "$dir/wp-content/plugins" "$dir/wp-content/mu-plugins" "$dir/wp-content/uploads"
	ln -sfn "$REPO/wp-plugin" "$dir/wp-content/plugins/woobrevo"
	cp "$HERE/wp-env/mu-test-env.php" "$dir/wp-content/mu-plugins/woobrevo-test-env.php"
	if [ -n "${WOOBREVO_WC_DIR:-}" ]; then
		ln -sfn "$WOOBREVO_WC_DIR" "$dir/wp-content/plugins/woocommerce"
	else
		printf "<?php\n// Loads the WooCommerce test double (tests/php/wc-double).\nrequire '%s';\n" \
			"$HERE/wc-double/wc-double.php" >"$dir/wp-content/mu-plugins/woobrevo-wc-double.php"
	fi
	local salts
	salts=$(php -r 'foreach (["AUTH_KEY","SECURE_AUTH_KEY","LOGGED_IN_KEY","NONCE_KEY","AUTH_SALT","SECURE_AUTH_SALT","LOGGED_IN_SALT","NONCE_SALT"] as $k) { echo "define( \x27$k\x27, \x27" . bin2hex(random_bytes(24)) . "\x27 );\n"; }')
	cat >"$dir/wp-config.php" <<PHP
<?php
// Written by tests/php/run.sh for one test run.
define( 'DB_NAME', '$db' );
define( 'DB_USER', '$DB_USER' );
define( 'DB_PASSWORD', '$DB_PASS' );
define( 'DB_HOST', 'localhost:$SOCK' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
$salts
\$table_prefix = 'wp_';
define( 'WP_DEBUG', true );
define( 'WP_DEBUG_DISPLAY', false ); // PHP's CLI log (stderr) still shows them.
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
define( 'WOOBREVO_TEST_KIND', '$kind' );
if ( file_exists( __DIR__ . '/wp-config-multisite.php' ) ) {
	require __DIR__ . '/wp-config-multisite.php';
}
if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
PHP
}

WP_SINGLE="$STATE/wp-single"
WP_MULTI="$STATE/wp-multi"
install_wp "$WP_SINGLE" wp_single single
install_wp "$WP_MULTI" wp_multi multisite
wp_step() {
	local dir="$1" step="$2" logf="$3"
	if ! php "$HERE/wp-env/install.php" "$dir" "$step" >"$logf.$step" 2>&1 || ! grep -q WOOBREVO-STEP-OK "$logf.$step"; then
		echo "WordPress install step '$step' failed in $dir:"; sed -e 's/<[^>]*>//g' "$logf.$step" | grep -v '^\s*$' | tail -30
		exit 1
	fi
}
wp_step "$WP_SINGLE" single "$STATE/install-single" &
single_pid=$!
wp_step "$WP_MULTI" single "$STATE/install-multi" && wp_step "$WP_MULTI" network "$STATE/install-multi" \
	&& wp_step "$WP_MULTI" activate "$STATE/install-multi" &
multi_pid=$!
wait $single_pid || exit 1
wp_step "$WP_SINGLE" activate "$STATE/install-single"
wait $multi_pid || exit 1
if [ -n "${WOOBREVO_WC_DIR:-}" ]; then
	wp_step "$WP_SINGLE" wc-install "$STATE/install-single"
	wp_step "$WP_MULTI" wc-install "$STATE/install-multi"
	WOOBREVO_WP_PATH=/shop2/ wp_step "$WP_MULTI" wc-install "$STATE/install-multi-shop2"
	wc_line=$(grep -h '^WooCommerce ' "$STATE/install-single.wc-install" | tail -1)
else
	wc_line="WooCommerce test double (tests/php/wc-double)"
fi
log "WordPress $(php -r 'include $argv[1]; echo $wp_version;' "$WP_SINGLE/wp-includes/version.php") installed: $WP_SINGLE, $WP_MULTI (multisite); $wc_line"

write_env() {
	cat <<ENV
WOOBREVO_PHP_STATE=$STATE
WOOBREVO_DB_SOCKET=$SOCK
WOOBREVO_DB_HOST=127.0.0.1
WOOBREVO_DB_PORT=$PORT
WOOBREVO_DB_USER=$DB_USER
WOOBREVO_DB_PASSWORD=$DB_PASS
WOOBREVO_DB_SINGLE=wp_single
WOOBREVO_DB_MULTI=wp_multi
WOOBREVO_WP_SINGLE=$WP_SINGLE
WOOBREVO_WP_MULTI=$WP_MULTI
WOOBREVO_WP_HOST=woobrevo.test
WOOBREVO_WP_LOADER=$HERE/wp-env/load.php
WOOBREVO_MYSQLD_PID=$(cat "$STATE/mysqld.pid")
ENV
}

if [ "$mode" = setup ]; then
	[ -n "$env_file" ] || env_file="$STATE/env"
	write_env >"$env_file"
	trap - EXIT INT TERM
	log "setup done; env in $env_file; stop with: $0 --stop --env-file $env_file"
	exit 0
fi

# ---------------------------------------------------------------------------------------------
# 4. Checks: php -l, phpcs (stock sniffs, phpcs.xml), bin/php-checks.
status=0
summary=()
if [ "$checks" = 1 ]; then
	lint_fail=0
	while IFS= read -r -d '' f; do
		php -l "$f" >/dev/null 2>"$STATE/lint.err" || { lint_fail=1; php -l "$f" || true; }
	done < <(find "$REPO/wp-plugin" "$REPO/tests/php" "$REPO/bench" -name '*.php' -print0 2>/dev/null)
	if [ $lint_fail = 0 ]; then summary+=("php -l: ok"); else summary+=("php -l: FAILED"); status=1; fi
	if phpcs --standard="$REPO/phpcs.xml" -q --report=summary "$REPO/wp-plugin" >"$STATE/phpcs.out" 2>&1; then
		summary+=("phpcs: ok")
	else
		phpcs --standard="$REPO/phpcs.xml" -q -s "$REPO/wp-plugin" | head -200 || true
		summary+=("phpcs: FAILED"); status=1
	fi
	if bash "$REPO/bin/php-checks" "$REPO/wp-plugin"; then summary+=("php-checks: ok"); else summary+=("php-checks: FAILED"); status=1; fi
	log "checks done"
fi

# ---------------------------------------------------------------------------------------------
# 5. PHPUnit suites; one process each (the unit suite loads no WordPress).
total_tests=0; total_bad=0; total_skipped=0
for s in "${suites[@]}"; do
	case "$s" in
		unit) wpdir="" ;;
		integration) wpdir="$WP_SINGLE" ;;
		multisite) wpdir="$WP_MULTI" ;;
		*) echo "unknown suite $s" >&2; exit 2 ;;
	esac
	junit="$STATE/junit-$s.xml"
	log "suite $s"
	set +e
	WOOBREVO_TEST_SUITE="$s" WOOBREVO_WP_DIR="$wpdir" WOOBREVO_PHP_STATE="$STATE" WOOBREVO_DB_SOCKET="$SOCK" \
		WOOBREVO_DB_PORT="$PORT" phpunit -c "$HERE/phpunit.xml" --testsuite "$s" --log-junit "$junit" "${phpunit_args[@]}"
	rc=$?
	set -e
	counts=$(php -r '$x = @simplexml_load_file($argv[1]); if (!$x || !isset($x->testsuite)) { echo "0 0 0"; exit; } $t = $x->testsuite; echo (int)$t["tests"], " ", (int)$t["failures"] + (int)$t["errors"], " ", (int)$t["skipped"];' "$junit")
	read -r n bad skipped <<<"$counts"
	total_tests=$((total_tests + n)); total_bad=$((total_bad + bad)); total_skipped=$((total_skipped + skipped))
	# PHPUnit exits 0 for "no tests executed" only with warnings; treat an empty suite as a failure too.
	if [ $rc -ne 0 ] || [ "$n" = 0 ]; then status=1; summary+=("$s: FAILED ($n tests, $bad failed, rc $rc)")
	else summary+=("$s: ok ($n tests, $skipped skipped)"); fi
done

echo
echo "== PHP summary ($(( $(date +%s) - T0 ))s) =="
for line in "${summary[@]}"; do echo "  $line"; done
echo "php: $((total_tests - total_bad - total_skipped)) passed, $total_bad failed, $total_skipped skipped"
exit $status
