"""The WooBrevo admin screen in a real browser, checked the way a store owner meets it.

Debian's Chromium (headless, driven by Playwright for Python with the system browser; no
browser of Playwright's own is downloaded) opens the test WordPress that `tests/php/run.sh
--setup-only` installed, served by PHP's built-in web server (`wp_router.php` does what
WordPress's .htaccess does). The browser resolves woobrevo.test, the sites' own host, to that
server, so WordPress sees its real URL. With a real WooCommerce (WOOBREVO_WC_DIR) the store is
one whose owner skipped WooCommerce's setup wizard (SKIP_SETUP_WIZARD); the test double has the
same top-level WooCommerce menu (tests/php/wc-double/wc-double.php).

The owner logs in at wp-login.php, opens WooCommerce → WooBrevo through the menu, types the
agent URL and the site token, saves, presses "Test connection" against the real agent and reads
the outcome and the status panel; then a wrong token, and the agent's refusal in plain words;
then (issue 16, finding 7) another agent URL without the token typed again, refused, and the
warnings for certificate verification off and for ws:// to another machine.
On the multisite network, Network Admin → Settings → WooBrevo lists every site.

Every screen state is checked with axe-core (Deque's checker, fetched from the npm registry at
test time into ~/.cache, never kept in the repository) run in that browser, WCAG 2.0/2.1 A and
AA rules, scoped to WooBrevo's own markup (its `.wrap` element: WordPress's own admin chrome is
not ours); and with the keyboard: Tab from the agent URL goes through every field to Save and
Test connection in order, each with a visible focus indicator.

The sites are shared with the other e2e tests: each test's WooBrevo options and the outbox rows
it added are put back as they were at its end, passed or failed (`restore_site`).

Screenshots of each step go to $WOOBREVO_ARTIFACTS (default: artifacts/browser/ in the
repository), named by site and step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, Agent, Php, free_port, token
from tests.kit import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

playwright_api = pytest.importorskip("playwright.async_api")

HERE = Path(__file__).resolve().parent
ROUTER = HERE / "wp_router.php"
LOADER = REPO / "tests" / "php" / "wp-env" / "load.php"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("WOOBREVO_ARTIFACTS") or REPO / "artifacts" / "browser")
ORIGIN = "http://woobrevo.test"
ADMIN = ("admin", "password")  # tests/php/wp-env/install.php
AXE_PACKAGE = "axe-core@4"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WAIT = 60 * UNIT
MS = 30_000 * UNIT  # Playwright's timeouts are in milliseconds.

# Chromium as root in a closed network: no sandbox (root), no GPU, and none of its own
# background traffic (it would retry refused connections for the whole run).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What WooBrevo's settings screen is made of (wp-plugin/includes/class-woobrevo-settings.php).
WRAP = ".woobrevo-settings"
NETWORK_WRAP = ".woobrevo-network"
URL_FIELD = "#woobrevo_agent_url"
TOKEN_FIELD = "#woobrevo_token"


# ------------------------------------------------------------------ the test WordPress's sites

# A store owner's WordPress: a new store's owner meets WooCommerce's setup wizard once (the first
# wp-admin request after activation goes to it, and WooCommerce → Home sends there until it is done)
# and skips it, which sets `skipped` in the onboarding profile (OnboardingProfile::needs_completion())
# and uses up the one-time activation redirect. The test double has neither; then nothing is done.
SKIP_SETUP_WIZARD = r"""
$profile_class = 'Automattic\WooCommerce\Internal\Admin\Onboarding\OnboardingProfile';
$skipped = class_exists( $profile_class ) && $profile_class::needs_completion();
if ( $skipped ) {
    update_option( $profile_class::DATA_OPTION, array( 'skipped' => true ) + (array) get_option( $profile_class::DATA_OPTION, array() ) );
}
delete_transient( '_wc_activation_redirect' );
$out = array( 'skipped' => $skipped );
"""

# Every WooBrevo option of the site and the last outbox row, serialized; and back: options as they
# were (the connection first: changing it resets the backoff and the last error), rows added since
# deleted. The e2e tests share one WordPress: a browser test that fails midway leaves it as it was.
SNAPSHOT = r"""
$marker  = new stdClass();
$options = array();
foreach ( WooBrevo_Options::ALL as $name ) {
    $value = get_option( $name, $marker );
    if ( $value !== $marker ) {
        $autoload         = $wpdb->get_var( $wpdb->prepare( "SELECT autoload FROM {$wpdb->options} WHERE option_name = %s", $name ) );
        $options[ $name ] = array( $value, in_array( $autoload, array( 'no', 'off' ), true ) ? 'no' : 'yes' );
    }
}
$table   = ( new WooBrevo_Outbox() )->table();
$last_id = (int) $wpdb->get_var( "SELECT COALESCE(MAX(id), 0) FROM {$table}" );
$out     = array( 'snapshot' => base64_encode( serialize( array( $options, $last_id ) ) ) );
"""
RESTORE = r"""
list( $options, $last_id ) = unserialize( base64_decode( $argv[1] ) );
$marker = new stdClass();
$names  = array_merge( WooBrevo_Options::CONNECTION, array_diff( WooBrevo_Options::ALL, WooBrevo_Options::CONNECTION ) );
foreach ( $names as $name ) {
    if ( ! isset( $options[ $name ] ) ) {
        delete_option( $name );
    } elseif ( get_option( $name, $marker ) === $marker ) {
        add_option( $name, $options[ $name ][0], '', $options[ $name ][1] );
    } else {
        update_option( $name, $options[ $name ][0] );
    }
}
$table = ( new WooBrevo_Outbox() )->table();
$out   = array( 'deleted_rows' => (int) $wpdb->query( $wpdb->prepare( "DELETE FROM {$table} WHERE id > %d", $last_id ) ) );
delete_transient( WooBrevo_Options::DEPTH_TRANSIENT );
"""


def site_php(wp_dir: Path, path: str, code: str, *args: str) -> dict[str, Any]:
    """Runs `code` in one request of the site at `path` of the WordPress in `wp_dir` (with its
    arguments in $argv[1:]); the code leaves its answer in $out. Nothing ships at its end."""
    script = (
        f"require {json.dumps(str(LOADER))};\n"
        "global $wpdb;\n"
        "add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );\n"
        f"{code}\n"
        "echo json_encode( $out ), PHP_EOL;\n"
    )
    done = subprocess.run(
        ["php", "-r", script, "--", *args],
        env={**os.environ, "WOOBREVO_WP_DIR": str(wp_dir), "WOOBREVO_WP_PATH": path},
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert done.returncode == 0 and lines, f"php on {wp_dir}{path}:\n{done.stdout}\n{done.stderr}"
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


@pytest.fixture
def restore_site(wp_env: dict[str, str]) -> Iterator[Any]:
    """`restore_site(kind, path)` notes that site's WooBrevo options and outbox now; at the end of
    the test, passed or failed, they are put back and rows the test added are deleted."""
    noted: list[tuple[Path, str, str]] = []

    def note(kind: str, path: str) -> None:
        wp_dir = Path(wp_env["WOOBREVO_WP_SINGLE" if kind == "single" else "WOOBREVO_WP_MULTI"])
        noted.append((wp_dir, path, site_php(wp_dir, path, SNAPSHOT)["snapshot"]))

    yield note
    for wp_dir, path, snapshot in reversed(noted):
        site_php(wp_dir, path, RESTORE, snapshot)


# ------------------------------------------------------------------------- the web server


@pytest.fixture(scope="module", autouse=True)
def _browser_and_artifacts() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: bin/system-packages installs Debian's chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def wp_http(wp_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Serves a test WordPress over HTTP: `serve("single" | "multi")` → the server's port."""
    logs = tmp_path_factory.mktemp("php-server")
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}

    def serve(kind: str) -> int:
        if kind in servers:
            return servers[kind][1]
        wp_dir = Path(wp_env["WOOBREVO_WP_SINGLE" if kind == "single" else "WOOBREVO_WP_MULTI"])
        for path in ("/",) if kind == "single" else ("/", "/shop2/"):
            site_php(wp_dir, path, SKIP_SETUP_WIZARD)
        port = free_port()
        with (logs / f"{kind}.log").open("ab") as log:
            proc = subprocess.Popen(
                ["php", "-S", f"127.0.0.1:{port}", "-t", str(wp_dir), str(ROUTER)],
                # A page's scripts and styles load in parallel; the Test connection request
                # waits for the agent meanwhile.
                env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers are stopped with it
            )
        servers[kind] = (proc, port)
        deadline = time.monotonic() + 30 * UNIT
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"php -S did not start: {(logs / f'{kind}.log').read_text()}")
            time.sleep(0.05)
        return port

    try:
        yield serve
    finally:
        for proc, _ in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ------------------------------------------------------------------------------ axe-core


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, from the npm registry into a cache folder on first use."""
    if not shutil.which("npm"):
        pytest.fail("npm is needed to fetch axe-core (Debian package npm)")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "woobrevo-tests"
    script = cache / "axe-core-4" / "node_modules" / "axe-core" / "axe.min.js"
    if not script.is_file():
        got = subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(script.parents[2]),
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                AXE_PACKAGE,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if got.returncode != 0 or not script.is_file():
            pytest.fail(f"npm install {AXE_PACKAGE} failed:\n{got.stdout}\n{got.stderr}")
    return script.read_text()


async def axe_violations(page: Any, axe: str, scope: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.0/2.1 A and AA violations inside `scope` on the page as it is."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(content=axe)
    result: dict[str, Any] = await page.evaluate(
        """async ([scope, tags]) => {
            const found = await axe.run(
                {include: [scope]},
                {runOnly: {type: 'tag', values: tags}},
            );
            return {
                passes: found.passes.length,
                violations: found.violations.map(v => ({
                    id: v.id,
                    impact: v.impact,
                    help: v.help,
                    nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary})),
                })),
            };
        }""",
        [scope, AXE_TAGS],
    )
    # A scope that matched nothing would pass every rule by checking none.
    assert result["passes"] > 0, f"axe-core checked nothing in {scope}"
    violations: list[dict[str, Any]] = result["violations"]
    return violations


async def check_axe_sees(page: Any, axe: str, scope: str) -> None:
    """The checker run as check_accessible() runs it finds a field with no label put into the
    scope (and the field is taken out again): a clean result means something."""
    await page.evaluate(
        """(scope) => document.querySelector(scope).insertAdjacentHTML(
            'beforeend', '<input type="text" id="woobrevo-axe-probe">')""",
        scope,
    )
    found = {v["id"] for v in await axe_violations(page, axe, scope)}
    await page.evaluate("() => document.getElementById('woobrevo-axe-probe').remove()")
    assert "label" in found, found


async def check_accessible(page: Any, axe: str, scope: str, state: str) -> None:
    violations = await axe_violations(page, axe, scope)
    assert not violations, f"axe-core on {state} ({scope}):\n" + json.dumps(violations, indent=1)


# ------------------------------------------------------------------------------ the browser


@asynccontextmanager
async def chromium(port: int, profile: Path) -> AsyncIterator[Any]:
    """A page of Debian's Chromium for which woobrevo.test is the server on `port`."""
    async with playwright_api.async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP woobrevo.test 127.0.0.1:{port}"],
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(MS)
            yield page
        finally:
            await context.close()


async def shot(page: Any, name: str) -> Path:
    """A full-page screenshot as an artifact, named by the step."""
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def log_in(page: Any) -> None:
    await page.goto(f"{ORIGIN}/wp-login.php")
    user = page.get_by_label("Username or Email Address")
    # The login page puts the cursor in the username field 200 ms after it is parsed
    # (wp_attempt_focus() selects the field's text): type once it is there, as a person does, or
    # the password typed meanwhile lands in the username field ("The password field is empty").
    await playwright_api.expect(user).to_be_focused()
    await user.fill(ADMIN[0])
    await page.get_by_label("Password", exact=True).fill(ADMIN[1])
    async with page.expect_navigation():
        await page.get_by_role("button", name="Log In").click()
    if "action=confirm_admin_email" in page.url:  # WordPress asks now and then
        async with page.expect_navigation():
            await page.get_by_role("button", name="The email is correct").click()
    if "/wp-login.php" in page.url:  # refused: say what the login page said
        shown = page.locator("#login_error")
        words = (await shown.inner_text()).strip() if await shown.count() else "no error shown"
        raise AssertionError(f"not logged in at {page.url}: {words}")
    await page.locator("#wpadminbar").wait_for()
    assert "/wp-admin/" in page.url, page.url


async def open_menu(page: Any, top: str, item: str) -> None:
    """Clicks a top-level admin menu entry, then an entry of its submenu, as a person does."""
    menu = page.locator("#adminmenu")
    async with page.expect_navigation():
        await menu.locator("a.menu-top", has_text=re.compile(rf"^\s*{top}\s*$")).click()
    async with page.expect_navigation():
        await menu.locator(".wp-submenu a", has_text=re.compile(rf"^\s*{item}\s*$")).click()


async def status_row(page: Any, name: str) -> str:
    """The status panel's value for one row ("Connection", "Outbox depth", …)."""
    heading = page.locator("th", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))
    cell = page.locator(f"{WRAP} table.woobrevo-status tr", has=heading)
    text: str = await cell.locator("td").inner_text()
    return text.strip()


async def notice(page: Any) -> tuple[str, str]:
    """WooBrevo's own notice on the screen: its role and its words."""
    box = page.locator(f"{WRAP} .woobrevo-notice")
    await box.wait_for()
    return (await box.get_attribute("role") or "", (await box.inner_text()).strip())


async def press(page: Any, button: str) -> None:
    async with page.expect_navigation():
        await page.locator(WRAP).get_by_role("button", name=button, exact=True).click()


# --------------------------------------------------------------------------- the keyboard


FOCUSABLE_JS = """(wrap) => Array.from(document.querySelectorAll(
    wrap + ' form :is(input:not([type=hidden]), select, textarea, button)'))
    .filter(e => !e.disabled && e.offsetParent !== null)
    .map(e => e.id || (e.name + '=' + e.value))"""

FOCUSED_JS = """() => {
    const e = document.activeElement;
    const style = getComputedStyle(e);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0
        && !/rgba\\(0, 0, 0, 0\\)|transparent/.test(style.outlineColor);
    return {
        key: e.id || (e.name + '=' + e.value),
        visible: outline || (style.boxShadow !== 'none' && style.boxShadow !== ''),
        outline: style.outlineStyle + ' ' + style.outlineWidth + ' ' + style.outlineColor,
        shadow: style.boxShadow,
    };
}"""


async def check_keyboard(page: Any) -> None:
    """Tab from the agent URL reaches the token, every other field, Save and Test connection in
    the page's order, and each focused control shows that it has the focus."""
    expected: list[str] = await page.evaluate(FOCUSABLE_JS, WRAP)
    assert expected[0] == URL_FIELD[1:] and expected[1] == TOKEN_FIELD[1:], expected
    wrap = page.locator(WRAP)
    save = await wrap.get_by_role("button", name="Save settings", exact=True).get_attribute("id")
    test = await wrap.get_by_role("button", name="Test connection", exact=True).get_attribute("id")
    assert expected[-2:] == [save, test], expected
    await page.locator(URL_FIELD).focus()
    reached: list[str] = []
    for _ in range(len(expected)):
        focused = await page.evaluate(FOCUSED_JS)
        reached.append(focused["key"])
        assert focused["visible"], f"no visible focus indicator on {focused}"
        if focused["key"] == test:
            break
        await page.keyboard.press("Tab")
    assert reached == expected, f"Tab order {reached}, page order {expected}"


# ------------------------------------------------------------------------------ the tests


async def test_admin_screen_in_chromium(
    wp_env: dict[str, str],
    wp_http: Any,
    axe_source: str,
    make_agent: Any,
    brevo: Any,
    restore_site: Any,
    tmp_path: Path,
) -> None:
    site_token = token("browser")
    agent: Agent = await make_agent([("default", site_token)])
    php = Php(wp_env)
    restore_site("single", "/")
    # A store with no agent set yet, and a backlog: a customer registered meanwhile.
    await php("configure", "", "")
    email = f"browser.{uuid.uuid4().hex[:6]}@example.com"
    await php("customer", email, "Ada", "Browser")
    backlog = (await php("state"))["depth"]
    assert backlog >= 1

    async with chromium(wp_http("single"), tmp_path / "chromium") as page:
        await log_in(page)
        await shot(page, "single-01-dashboard")
        await open_menu(page, "WooCommerce", "WooBrevo")
        assert page.url.endswith("/wp-admin/admin.php?page=woobrevo"), page.url
        await page.locator(URL_FIELD).wait_for()
        assert await status_row(page, "Connection") == "not connected"
        assert await status_row(page, "Outbox depth") == str(backlog)
        await shot(page, "single-02-settings-form")
        await check_axe_sees(page, axe_source, WRAP)
        await check_accessible(page, axe_source, WRAP, "the settings form")
        await check_keyboard(page)

        # The agent is down when the owner saves: the panel says so and the backlog waits.
        await agent.stop()
        await page.locator(URL_FIELD).fill(agent.url)
        await page.locator(TOKEN_FIELD).fill(site_token)
        await press(page, "Save settings")
        assert await notice(page) == ("status", "Settings saved.")
        assert await status_row(page, "Connection") == "not connected"
        assert await status_row(page, "Outbox depth") == str(backlog)
        assert (await status_row(page, "Last error")).startswith(f"cannot connect to {agent.url}")
        assert site_token not in await page.content()
        await shot(page, "single-03-saved-agent-down")
        await check_accessible(page, axe_source, WRAP, "the saved notice")

        # The agent is back: Test connection sends the backlog and says so in plain words.
        await agent.start()
        await press(page, "Test connection")
        events = "event" if backlog == 1 else "events"
        assert await notice(page) == (
            "status",
            f"Connected; {backlog} {events} sent, {backlog} acknowledged by the agent.",
        )
        assert re.fullmatch(
            r"connected \(last tick \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
            await status_row(page, "Connection"),
        )
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", await status_row(page, "Last ack")
        )
        assert await status_row(page, "Outbox depth") == "0"
        assert await status_row(page, "Last error") == ""
        await shot(page, "single-04-connected-status")
        await check_accessible(page, axe_source, WRAP, "the success notice and status panel")
        await brevo.wait_for(lambda: email in brevo.contacts, timeout=WAIT)
        seen = (await agent.status())["sites"]["default"]
        assert (seen["site_url"] or "").rstrip("/") == ORIGIN, seen

        # A wrong token: the agent refuses it, and the screen says what the agent said.
        await page.locator(TOKEN_FIELD).fill(token("browser-wrong"))
        await press(page, "Save settings")
        assert await notice(page) == ("status", "Settings saved.")
        await press(page, "Test connection")
        role, words = await notice(page)
        stream = agent.url
        assert (role, words) == (
            "alert",
            f"Connection failed: token refused by the agent at {stream} (HTTP 401): "
            "set a valid site token",
        )
        # The agent's answer to the handshake, as it sent it (agent/doors/stream.py).
        assert "token refused" in words
        await shot(page, "single-05-token-refused")
        await check_accessible(page, axe_source, WRAP, "the refusal notice")

        # Meanwhile the shop goes on: the new change waits in the outbox, and the panel shows it.
        await php("customer", f"later.{uuid.uuid4().hex[:6]}@example.com", "Bo", "Later")
        waiting = (await php("state"))["depth"]
        assert waiting >= 1
        await page.reload()
        assert await status_row(page, "Connection") == "not connected"
        assert await status_row(page, "Outbox depth") == str(waiting)
        assert "token refused" in await status_row(page, "Last error")
        await shot(page, "single-06-refused-status")
        await check_accessible(page, axe_source, WRAP, "the status panel with a backlog")

        # Issue 16, finding 7: another agent (host, port or scheme) needs the token typed again,
        # so the stored token never goes to a server nobody typed it for.
        other = "wss://agent.example:8765/v1/stream"
        await page.locator(URL_FIELD).fill(other)
        await press(page, "Save settings")
        role, words = await notice(page)
        assert role == "alert", words
        assert words.startswith(f"Not saved: the agent URL {other} names another server"), words
        assert await page.locator(URL_FIELD).input_value() == stream
        await shot(page, "single-07-new-agent-needs-the-token")
        await check_accessible(page, axe_source, WRAP, "the refused URL change")

        # With the token typed it is saved; certificate verification off is warned of, on the
        # screen and in the status panel.
        warning = page.locator(f"{WRAP} .notice-warning.woobrevo-security-warning[role=alert]")
        await page.locator(URL_FIELD).fill(other)
        await page.locator(TOKEN_FIELD).fill(site_token)
        await page.get_by_label("Verify the agent's certificate").uncheck()
        await press(page, "Save settings")
        assert await notice(page) == ("status", "Settings saved.")
        assert await warning.count() == 1
        assert "certificate is not verified" in await warning.inner_text()
        assert (await status_row(page, "Connection security")).startswith(
            "Unsafe: The agent's certificate is not verified"
        )
        await shot(page, "single-08-tls-verification-off-warned")
        await check_accessible(page, axe_source, WRAP, "the TLS warning")

        # ws:// to another machine: the token and the events would cross the network in clear.
        await page.locator(URL_FIELD).fill("ws://agent.example:8765/v1/stream")
        await page.locator(TOKEN_FIELD).fill(site_token)
        await page.get_by_label("Verify the agent's certificate").check()
        await press(page, "Save settings")
        assert await notice(page) == ("status", "Settings saved.")
        assert await warning.count() == 1
        assert "ws:// to agent.example, another machine" in await warning.inner_text()
        assert (await status_row(page, "Connection security")).startswith(
            "Unsafe: The agent URL is ws:// to agent.example"
        )
        assert site_token not in await page.content()
        await shot(page, "single-09-ws-to-another-machine-warned")
        await check_accessible(page, axe_source, WRAP, "the ws:// warning")


async def test_network_admin_screen_in_chromium(
    wp_env: dict[str, str], wp_http: Any, axe_source: str, restore_site: Any, tmp_path: Path
) -> None:
    shop2 = Php(wp_env, "multisite", "/shop2/")
    restore_site("multi", "/shop2/")
    # Shop 2 has a token and an agent URL where nothing listens: its changes wait.
    await shop2("configure", f"ws://127.0.0.1:{free_port()}/v1/stream", token("browser-shop2"))
    await shop2("customer", f"shop2.{uuid.uuid4().hex[:6]}@example.com", "Cy", "Two")
    waiting = (await shop2("state"))["depth"]
    assert waiting >= 1
    async with chromium(wp_http("multi"), tmp_path / "chromium") as page:
        await log_in(page)
        # The toolbar's My Sites → Network Admin, then Settings → WooBrevo.
        await page.locator("#wp-admin-bar-my-sites").hover()
        async with page.expect_navigation():
            await page.locator("#wp-admin-bar-network-admin > a").click()
        await open_menu(page, "Settings", "WooBrevo")
        assert page.url.endswith("/wp-admin/network/settings.php?page=woobrevo-network")
        table = page.locator(f"{NETWORK_WRAP} table")
        rows = [
            [c.strip() for c in await row.locator("td").all_inner_texts()]
            for row in await table.locator("tbody tr").all()
        ]
        by_site = {row[0]: row for row in rows}
        assert set(by_site) >= {"1", "2"}, rows
        assert by_site["2"][1] == f"{ORIGIN}/shop2/"
        assert by_site["2"][2] == f"set (…{token('browser-shop2')[-4:]})"
        assert by_site["2"][3:] == ["no", "never", str(waiting)], rows
        await shot(page, "network-01-sites")
        await check_accessible(page, axe_source, NETWORK_WRAP, "the network screen")

        # Shop 2's own screen, at /shop2/wp-admin/: My Sites → Shop 2, then the menu.
        await page.locator("#wp-admin-bar-my-sites").hover()
        await page.locator("#wp-admin-bar-blog-2").hover()
        async with page.expect_navigation():
            await page.locator("#wp-admin-bar-blog-2-d > a").click()
        await open_menu(page, "WooCommerce", "WooBrevo")
        assert page.url == f"{ORIGIN}/shop2/wp-admin/admin.php?page=woobrevo", page.url
        assert await status_row(page, "Outbox depth") == str(waiting)
        assert (await status_row(page, "Last error")).startswith("cannot connect to ws://")
        await shot(page, "network-02-shop2-settings")
        await check_accessible(page, axe_source, WRAP, "a network site's settings form")
        await check_keyboard(page)
