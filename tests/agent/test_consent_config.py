"""`connectors.woocommerce.consent`: defaults, per-site overrides, errors and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, config_warnings
from tests import kit

DOI = {"template_id": 12, "redirect_url": "https://shop.example/thanks"}


def test_defaults_and_a_site_override(tmp_path: Path) -> None:
    data = kit.config_data(
        tmp_path,
        woocommerce={"consent": {"mode": "required", "double_opt_in": DOI}},
        sites=[kit.site("a", "t" * 32), kit.site("b", "u" * 32, consent={"mode": "implied"})],
    )
    a, b = kit.load(tmp_path, data).resolved_sites()
    assert a.woo.consent.mode == "required" and a.woo.consent.double_opt_in is not None
    assert a.woo.consent.double_opt_in.template_id == 12
    assert b.woo.consent.mode == "implied" and b.woo.consent.double_opt_in is None
    plain = kit.load(tmp_path, kit.config_data(tmp_path)).resolved_sites()[0].woo.consent
    assert (plain.mode, plain.transactional_events, plain.double_opt_in) == ("implied", (), None)


@pytest.mark.parametrize(
    ("consent", "message"),
    [
        ({"mode": "opt-in"}, "connectors.woocommerce.consent.mode: Input should be 'implied' or"),
        ({"modes": "required"}, "connectors.woocommerce.consent.modes: unknown key"),
        ({"transactional_events": ["order placed"]}, "Brevo event names are 1-255"),
        ({"double_opt_in": {"template_id": 0, "redirect_url": "https://x.example"}},
         "consent.double_opt_in.template_id: Input should be greater than or equal to 1"),
        ({"double_opt_in": {"template_id": 3, "redirect_url": "thanks.html"}},
         "consent.double_opt_in.redirect_url: expected an http(s) URL"),
        ({"double_opt_in": {"template_id": 3}}, "double_opt_in.redirect_url: required key is missing"),
        ({"double_opt_in": {**DOI, "sender": 1}}, "double_opt_in.sender: unknown key"),
    ],
)  # fmt: skip
def test_errors_name_the_key(tmp_path: Path, consent: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        kit.load(tmp_path, kit.config_data(tmp_path, woocommerce={"consent": consent}))
    assert message in str(err.value)


def test_a_transactional_event_no_topic_sends_is_warned_about(tmp_path: Path) -> None:
    woo = {
        "webhooks": [{"topic": "order.created", "event": "order_placed"}],
        "consent": {"mode": "required",
                    "transactional_events": ["order_placed", "order_fulfilled", "cart_abandoned",
                                             "order_shipped"]},
    }  # fmt: skip
    warnings = config_warnings(kit.load(tmp_path, kit.config_data(tmp_path, woocommerce=woo)))
    (warning,) = [w for w in warnings if "transactional_events" in w]
    assert "'order_shipped' is no event this site sends" in warning
