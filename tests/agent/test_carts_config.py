"""`connectors.woocommerce.carts`: defaults, per-site overrides, errors and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, config_warnings
from tests import kit


def test_defaults(tmp_path: Path) -> None:
    carts = kit.load(tmp_path, kit.config_data(tmp_path)).resolved_sites()[0].woo.carts
    assert carts.enabled is True
    assert (carts.abandon_after, carts.expire_after) == (3600.0, 30 * 86400.0)
    assert (carts.attribution_window, carts.link_lifetime) == (7 * 86400.0, 7 * 86400.0)
    assert (carts.event, carts.recovered_event) == ("cart_abandoned", "cart_recovered")


def test_a_site_overrides_the_block(tmp_path: Path) -> None:
    data = kit.config_data(
        tmp_path,
        woocommerce={"carts": {"abandon_after": "2h", "event": "cart_left"}},
        sites=[kit.site("a", "t" * 32), kit.site("b", "u" * 32, carts={"abandon_after": "5s"})],
    )
    a, b = kit.load(tmp_path, data).resolved_sites()
    assert (a.woo.carts.abandon_after, a.woo.carts.event) == (7200.0, "cart_left")
    assert b.woo.carts.abandon_after == 5.0


@pytest.mark.parametrize(
    ("carts", "message"),
    [
        ({"abandon_after": 60}, "connectors.woocommerce.carts.abandon_after: expected a duration"),
        (
            {"expire_after": "soon"},
            "connectors.woocommerce.carts.expire_after: expected a duration",
        ),
        (
            {"link_lifetime": "0s"},
            "connectors.woocommerce.carts.link_lifetime: must be at least 1s",
        ),
        ({"event": "cart abandoned"}, "connectors.woocommerce.carts.event: Brevo event names"),
        ({"abandon_after": "2d", "expire_after": "1d"}, "expire_after (86400s) must be longer"),
        ({"abandon": "1h"}, "connectors.woocommerce.carts.abandon: unknown key"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, carts: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        kit.load(tmp_path, kit.config_data(tmp_path, woocommerce={"carts": carts}))
    assert message in str(err.value)


def test_polling_and_webhook_only_sites_are_told_carts_ride_the_stream(tmp_path: Path) -> None:
    rest = {"store_url": "https://shop.example", "consumer_key": "ck", "consumer_secret": "cs"}
    data = kit.config_data(
        tmp_path,
        sites=[
            {"id": "p", "mode": "polling", **rest},
            {"id": "w", "webhook_secret": "s" * 32},
            kit.site("s", "t" * 32),
            {"id": "off", "mode": "polling", "carts": {"enabled": False}, **rest},
        ],
    )
    warnings = [w for w in config_warnings(kit.load(tmp_path, data)) if ".carts:" in w]
    assert [w.split(".carts:")[0] for w in warnings] == ["sites[0] (p)", "sites[1] (w)"]
    assert all("ride only the plugin's stream" in w for w in warnings)
