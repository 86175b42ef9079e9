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
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import random
import re
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote, unquote, unquote_plus

import aiohttp
from aiohttp import web

__all__ = ["ApiKey", "FakeClock", "FakeStore", "RequestRecord", "WooFake", "php_json"]

WC_VERSION: Final = "10.0.2"
WP_VERSION: Final = "6.8.8"
NAMESPACE: Final = "wc/v3"
HOME_TOKEN: Final = "__WC_HOME__"  # replaced by the home URL when a body is rendered
REST_TOKEN: Final = "__WC_REST__"  # replaced by the REST root (…/wp-json or …/?rest_route=)
RESOURCES: Final = ("customers", "orders", "products", "variations", "coupons", "refunds")
NONCE_WINDOW: Final = 15 * 60  # WC_REST_Authentication::check_oauth_timestamp_and_nonce()

# Templates: real WooCommerce 10.0.2 objects from reference/woocommerce/real-10.0.2/rest/ (customer
# 28, order 59, products 40 and 42, variation 43, coupon 46, refund 52, webhook 24, system_status 17
# trimmed to the first entries of its long lists), `_links` removed: they are built per request.
# Kept as JSON text, exactly as WooCommerce sent it; generated objects are copies with new values.
_CUSTOMER: Final[dict[str, Any]] = json.loads(
    '{"id":2,"date_created":"2026-11-27T05:18:12","date_created_gmt":"2026-11-27T05:18:12","d'
    'ate_modified":"2026-11-27T05:18:12","date_modified_gmt":"2026-11-27T05:18:12","email":"a'
    'lice@example.com","first_name":"Alice","last_name":"Martin","role":"customer","username"'
    ':"alice","billing":{"first_name":"Alice","last_name":"Martin","company":"","address_1":"'
    '12 Rue de Test","address_2":"","city":"Paris","postcode":"75002","country":"FR","state":'
    '"","email":"alice@example.com","phone":"+33612345678"},"shipping":{"first_name":"Alice",'
    '"last_name":"Martin","company":"","address_1":"12 Rue de Test","address_2":"","city":"Pa'
    'ris","postcode":"75002","country":"FR","state":"","phone":"+33612345678"},"is_paying_cus'
    'tomer":false,"avatar_url":"https://secure.gravatar.com/avatar/ff8d9819fc0e12bf0d24892e45'
    '987e249a28dce836a85cad60e28eaaa8c6d976?s=96&d=mm&r=g","meta_data":[{"id":29,"key":"defau'
    'lt_password_nag","value":"1"},{"id":46,"key":"brevo_opt_in","value":"yes"},{"id":47,"key'
    '":"loyalty_tier","value":"gold"}]}'
)
_ORDER: Final[dict[str, Any]] = json.loads(
    '{"id":19,"parent_id":0,"status":"completed","currency":"EUR","version":"10.0.2","prices_'
    'include_tax":false,"date_created":"2026-11-27T05:18:14","date_modified":"2026-11-27T05:1'
    '8:14","discount_total":"3.60","discount_tax":"0.00","shipping_total":"4.90","shipping_ta'
    'x":"0.00","cart_tax":"0.00","total":"37.28","total_tax":"0.00","customer_id":2,"order_ke'
    'y":"wc_order_6SQlNEof0pPmW","billing":{"first_name":"Alice","last_name":"Martin","compan'
    'y":"","address_1":"12 Rue de Test","address_2":"","city":"Paris","state":"","postcode":"'
    '75002","country":"FR","email":"alice@example.com","phone":"+33612345678"},"shipping":{"f'
    'irst_name":"Alice","last_name":"Martin","company":"","address_1":"12 Rue de Test","addre'
    'ss_2":"","city":"Paris","state":"","postcode":"75002","country":"FR","phone":"+336123456'
    '78"},"payment_method":"bacs","payment_method_title":"Direct bank transfer","transaction_'
    'id":"","customer_ip_address":"","customer_user_agent":"","created_via":"rest-api","custo'
    'mer_note":"","date_completed":"2026-11-27T05:18:14","date_paid":"2026-11-27T05:18:14","c'
    'art_hash":"","number":"19","meta_data":[{"id":1,"key":"_brevo_test","value":"o1"}],"line'
    '_items":[{"id":1,"name":"Blue T-Shirt","product_id":12,"variation_id":0,"quantity":2,"ta'
    'x_class":"","subtotal":"35.98","subtotal_tax":"0.00","total":"32.38","total_tax":"0.00",'
    '"taxes":[],"meta_data":[{"id":18,"key":"_reduced_stock","value":"2","display_key":"_redu'
    'ced_stock","display_value":"2"}],"sku":"TSHIRT-BLUE","price":16.19,"image":{"id":"","src'
    '":""},"parent_name":null}],"tax_lines":[],"shipping_lines":[{"id":2,"method_title":"Flat'
    ' rate","method_id":"flat_rate","instance_id":"","total":"4.90","total_tax":"0.00","taxes'
    '":[],"tax_status":"taxable","meta_data":[]}],"fee_lines":[],"coupon_lines":[{"id":3,"cod'
    'e":"welcome10","discount":"3.6","discount_tax":"0","meta_data":[{"id":17,"key":"coupon_i'
    'nfo","value":"[17,\\"welcome10\\",\\"percent\\",10]","display_key":"coupon_info","display_va'
    'lue":"[17,\\"welcome10\\",\\"percent\\",10]"}],"discount_type":"percent","nominal_amount":10'
    ',"free_shipping":false}],"refunds":[],"payment_url":"https://127.0.0.1:8443/checkout/ord'
    'er-pay/19/?pay_for_order=true&key=wc_order_6SQlNEof0pPmW","is_editable":false,"needs_pay'
    'ment":false,"needs_processing":true,"date_created_gmt":"2026-11-27T05:18:14","date_modif'
    'ied_gmt":"2026-11-27T05:18:14","date_completed_gmt":"2026-11-27T05:18:14","date_paid_gmt'
    '":"2026-11-27T05:18:14","currency_symbol":"€"}'
)
_PRODUCT_SIMPLE: Final[dict[str, Any]] = json.loads(
    '{"id":12,"name":"Blue T-Shirt","slug":"blue-t-shirt","permalink":"https://127.0.0.1:8443'
    '/product/blue-t-shirt/","date_created":"2026-11-27T05:18:13","date_created_gmt":"2026-11'
    '-27T05:18:13","date_modified":"2026-11-27T05:18:13","date_modified_gmt":"2026-11-27T05:1'
    '8:13","type":"simple","status":"publish","featured":false,"catalog_visibility":"visible"'
    ',"description":"<p>100% cotton.</p>\\n","short_description":"<p>A blue tee.</p>\\n","sku":'
    '"TSHIRT-BLUE","price":"19.99","regular_price":"19.99","sale_price":"","date_on_sale_from'
    '":null,"date_on_sale_from_gmt":null,"date_on_sale_to":null,"date_on_sale_to_gmt":null,"o'
    'n_sale":false,"purchasable":true,"total_sales":0,"virtual":false,"downloadable":false,"d'
    'ownloads":[],"download_limit":-1,"download_expiry":-1,"external_url":"","button_text":""'
    ',"tax_status":"taxable","tax_class":"","manage_stock":true,"stock_quantity":50,"backorde'
    'rs":"no","backorders_allowed":false,"backordered":false,"low_stock_amount":null,"sold_in'
    'dividually":false,"weight":"","dimensions":{"length":"","width":"","height":""},"shippin'
    'g_required":true,"shipping_taxable":true,"shipping_class":"","shipping_class_id":0,"revi'
    'ews_allowed":true,"average_rating":"0.00","rating_count":0,"upsell_ids":[],"cross_sell_i'
    'ds":[],"parent_id":0,"purchase_note":"","categories":[{"id":15,"name":"Uncategorized","s'
    'lug":"uncategorized"}],"brands":[],"tags":[],"images":[],"attributes":[],"default_attrib'
    'utes":[],"variations":[],"grouped_products":[],"menu_order":0,"price_html":"<span class='
    '\\"woocommerce-Price-amount amount\\"><bdi><span class=\\"woocommerce-Price-currencySymbol\\'
    '">&euro;</span>19.99</bdi></span>","related_ids":[],"meta_data":[{"id":23,"key":"brand",'
    '"value":"Loopback"}],"stock_status":"instock","has_options":false,"post_password":"","gl'
    'obal_unique_id":""}'
)
_PRODUCT_VARIABLE: Final[dict[str, Any]] = json.loads(
    '{"id":14,"name":"Hoodie","slug":"hoodie","permalink":"https://127.0.0.1:8443/product/hoo'
    'die/","date_created":"2026-11-27T05:18:13","date_created_gmt":"2026-11-27T05:18:13","dat'
    'e_modified":"2026-11-27T05:18:13","date_modified_gmt":"2026-11-27T05:18:13","type":"vari'
    'able","status":"publish","featured":false,"catalog_visibility":"visible","description":"'
    '","short_description":"","sku":"HOODIE","price":"35.00","regular_price":"","sale_price":'
    '"","date_on_sale_from":null,"date_on_sale_from_gmt":null,"date_on_sale_to":null,"date_on'
    '_sale_to_gmt":null,"on_sale":true,"purchasable":true,"total_sales":0,"virtual":false,"do'
    'wnloadable":false,"downloads":[],"download_limit":-1,"download_expiry":-1,"external_url"'
    ':"","button_text":"","tax_status":"taxable","tax_class":"","manage_stock":false,"stock_q'
    'uantity":null,"backorders":"no","backorders_allowed":false,"backordered":false,"low_stoc'
    'k_amount":null,"sold_individually":false,"weight":"","dimensions":{"length":"","width":"'
    '","height":""},"shipping_required":true,"shipping_taxable":true,"shipping_class":"","shi'
    'pping_class_id":0,"reviews_allowed":true,"average_rating":"0.00","rating_count":0,"upsel'
    'l_ids":[],"cross_sell_ids":[],"parent_id":0,"purchase_note":"","categories":[{"id":15,"n'
    'ame":"Uncategorized","slug":"uncategorized"}],"brands":[],"tags":[],"images":[],"attribu'
    'tes":[{"id":0,"name":"Size","slug":"Size","position":0,"visible":true,"variation":true,"'
    'options":["S","M"]}],"default_attributes":[{"id":0,"name":"Size","option":"S"}],"variati'
    'ons":[15,16],"grouped_products":[],"menu_order":0,"price_html":"<span class=\\"woocommerc'
    'e-Price-amount amount\\" aria-hidden=\\"true\\"><bdi><span class=\\"woocommerce-Price-curren'
    'cySymbol\\">&euro;</span>35.00</bdi></span> <span aria-hidden=\\"true\\">&ndash;</span> <sp'
    'an class=\\"woocommerce-Price-amount amount\\" aria-hidden=\\"true\\"><bdi><span class=\\"woo'
    'commerce-Price-currencySymbol\\">&euro;</span>39.00</bdi></span><span class=\\"screen-read'
    'er-text\\">Price range: &euro;35.00 through &euro;39.00</span>","related_ids":[13,12],"me'
    'ta_data":[],"stock_status":"instock","has_options":true,"post_password":"","global_uniqu'
    'e_id":""}'
)
_VARIATION: Final[dict[str, Any]] = json.loads(
    '{"id":16,"type":"variation","date_created":"2026-11-27T05:18:13","date_created_gmt":"202'
    '6-11-27T05:18:13","date_modified":"2026-11-27T05:18:13","date_modified_gmt":"2026-11-27T'
    '05:18:13","description":"","permalink":"https://127.0.0.1:8443/product/hoodie/?attribute'
    '_size=M","sku":"HOODIE-M","global_unique_id":"","price":"35.00","regular_price":"42.00",'
    '"sale_price":"35.00","date_on_sale_from":null,"date_on_sale_from_gmt":null,"date_on_sale'
    '_to":null,"date_on_sale_to_gmt":null,"on_sale":true,"status":"publish","purchasable":tru'
    'e,"virtual":false,"downloadable":false,"downloads":[],"download_limit":-1,"download_expi'
    'ry":-1,"tax_status":"taxable","tax_class":"","manage_stock":false,"stock_quantity":null,'
    '"stock_status":"instock","backorders":"no","backorders_allowed":false,"backordered":fals'
    'e,"low_stock_amount":null,"weight":"","dimensions":{"length":"","width":"","height":""},'
    '"shipping_class":"","shipping_class_id":0,"image":null,"attributes":[{"id":0,"name":"Siz'
    'e","slug":"size","option":"M"}],"menu_order":0,"meta_data":[],"name":"M","parent_id":14}'
)
_COUPON: Final[dict[str, Any]] = json.loads(
    '{"id":18,"code":"fiveoff","amount":"5.00","status":"publish","date_created":"2026-11-27T'
    '05:18:14","date_created_gmt":"2026-11-27T05:18:14","date_modified":"2026-11-27T05:18:14"'
    ',"date_modified_gmt":"2026-11-27T05:18:14","discount_type":"fixed_cart","description":""'
    ',"date_expires":"2030-12-31T23:59:59","date_expires_gmt":"2030-12-31T23:59:59","usage_co'
    'unt":0,"individual_use":false,"product_ids":[],"excluded_product_ids":[],"usage_limit":n'
    'ull,"usage_limit_per_user":null,"limit_usage_to_x_items":null,"free_shipping":false,"pro'
    'duct_categories":[],"excluded_product_categories":[],"exclude_sale_items":false,"minimum'
    '_amount":"20.00","maximum_amount":"0.00","email_restrictions":[],"used_by":[],"meta_data'
    '":[]}'
)
_REFUND: Final[dict[str, Any]] = json.loads(
    '{"id":21,"date_created":"2026-11-27T05:18:15","date_created_gmt":"2026-11-27T05:18:15","'
    'amount":"89.00","reason":"Customer changed mind","refunded_by":1,"refunded_payment":fals'
    'e,"meta_data":[],"line_items":[{"id":6,"name":"Hoodie - S","product_id":14,"variation_id'
    '":15,"quantity":-1,"tax_class":"","subtotal":"-39.00","subtotal_tax":"0.00","total":"-39'
    '.00","total_tax":"0.00","taxes":[],"meta_data":[{"id":48,"key":"_refunded_item_id","valu'
    'e":"4","display_key":"_refunded_item_id","display_value":"4"}],"sku":"HOODIE-S","price":'
    '39,"image":{"id":0,"src":""},"parent_name":"Hoodie"},{"id":7,"name":"E-Gift Card","produ'
    'ct_id":13,"variation_id":0,"quantity":-1,"tax_class":"","subtotal":"-50.00","subtotal_ta'
    'x":"0.00","total":"-50.00","total_tax":"0.00","taxes":[],"meta_data":[{"id":58,"key":"_r'
    'efunded_item_id","value":"5","display_key":"_refunded_item_id","display_value":"5"}],"sk'
    'u":"GIFT-50","price":50,"image":{"id":"","src":""},"parent_name":null}],"shipping_lines"'
    ':[],"tax_lines":[],"fee_lines":[]}'
)
_WEBHOOK: Final[dict[str, Any]] = json.loads(
    '{"id":2,"name":"realwc order.updated","status":"active","topic":"order.updated","resourc'
    'e":"order","event":"updated","hooks":["woocommerce_update_order","woocommerce_order_refu'
    'nded"],"delivery_url":"http://127.0.0.1:9099/hook","date_created":"2026-11-27T05:18:12",'
    '"date_created_gmt":"2026-11-27T05:18:12","date_modified":"2026-11-27T05:18:12","date_mod'
    'ified_gmt":"2026-11-27T05:18:12"}'
)
_SYSTEM_STATUS: Final[dict[str, Any]] = json.loads(
    '{"environment":{"home_url":"__WC_HOME__","site_url":"__WC_HOME__","store_id":"6e4926a4-8'
    '171-4aa3-aaed-efa2addd95ef","version":"10.0.2","log_directory":"/var/www/html/wp-content'
    '/uploads/wc-logs/","log_directory_writable":true,"wp_version":"6.8.8","wp_multisite":fal'
    'se,"wp_memory_limit":536870912,"wp_debug_mode":true,"wp_cron":true,"language":"en_US","e'
    'xternal_object_cache":null,"server_info":"nginx","server_architecture":"Linux 6.18.44-fc'
    '-v669 x86_64","php_version":"8.2.36","php_post_max_size":67108864,"php_max_execution_tim'
    'e":300,"php_max_input_vars":1000,"curl_version":"7.88.1, OpenSSL/3.0.22","suhosin_instal'
    'led":false,"max_upload_size":67108864,"mysql_version":"10.11.19","mysql_version_string":'
    '"10.11.19-MariaDB-0+deb12u1","default_timezone":"UTC","fsockopen_or_curl_enabled":true,"'
    'soapclient_enabled":false,"domdocument_enabled":true,"gzip_enabled":true,"mbstring_enabl'
    'ed":true,"remote_post_successful":false,"remote_post_response":false,"remote_get_success'
    'ful":false,"remote_get_response":false},"database":{"wc_database_version":"10.0.2","data'
    'base_prefix":"wp_","maxmind_geoip_database":"","database_tables":{"woocommerce":{"wp_woo'
    'commerce_sessions":{"data":"0.02","index":"0.02","engine":"InnoDB"},"wp_woocommerce_api_'
    'keys":{"data":"0.02","index":"0.03","engine":"InnoDB"},"wp_woocommerce_attribute_taxonom'
    'ies":{"data":"0.02","index":"0.02","engine":"InnoDB"}},"other":{"wp_actionscheduler_acti'
    'ons":{"data":"0.02","index":"0.11","engine":"InnoDB"},"wp_actionscheduler_claims":{"data'
    '":"0.02","index":"0.02","engine":"InnoDB"}}},"database_size":{"data":1.0000000000000004,'
    '"index":1.7100000000000009}},"active_plugins":[{"plugin":"woocommerce/woocommerce.php","'
    'name":"WooCommerce","version":"10.0.2","version_latest":"10.0.2","url":"https://woocomme'
    'rce.com/","author_name":"Automattic","author_url":"https://woocommerce.com","network_act'
    'ivated":false}],"inactive_plugins":[{"plugin":"akismet/akismet.php","name":"Akismet Anti'
    '-spam: Spam Protection","version":"5.5","version_latest":"5.5","url":"https://akismet.co'
    'm/","author_name":"Automattic - Anti-spam Team","author_url":"https://automattic.com/wor'
    'dpress-plugins/","network_activated":false}],"dropins_mu_plugins":{"dropins":[],"mu_plug'
    'ins":[{"plugin":"realwc-sandbox.php","name":"realwc sandbox helpers (generated by setup.'
    'sh)","version":"","url":"","author_name":"","author_url":""}]},"theme":{"name":"Twenty T'
    'wenty-Five","version":"1.3","version_latest":0,"author_url":"https://wordpress.org","is_'
    'child_theme":false,"is_block_theme":true,"has_woocommerce_support":false,"has_woocommerc'
    'e_file":false,"has_outdated_templates":false,"overrides":[{"file":"/var/www/html/wp-cont'
    'ent/plugins/woocommerce/templates/block-notices/error.php","version":"8.6.0","core_versi'
    'on":"8.6.0"}],"parent_name":"","parent_version":"","parent_version_latest":"","parent_au'
    'thor_url":""},"settings":{"api_enabled":false,"force_ssl":false,"currency":"EUR","curren'
    'cy_symbol":"&euro;","currency_position":"left","thousand_separator":",","decimal_separat'
    'or":".","number_of_decimals":2,"geolocation_enabled":false,"taxonomies":{"external":"ext'
    'ernal","grouped":"grouped","simple":"simple","variable":"variable"},"product_visibility_'
    'terms":{"exclude-from-catalog":"exclude-from-catalog","exclude-from-search":"exclude-fro'
    'm-search","featured":"featured","outofstock":"outofstock","rated-1":"rated-1","rated-2":'
    '"rated-2","rated-3":"rated-3","rated-4":"rated-4","rated-5":"rated-5"},"woocommerce_com_'
    'connected":"no","enforce_approved_download_dirs":true,"order_datastore":"Automattic\\\\Woo'
    'Commerce\\\\Internal\\\\DataStores\\\\Orders\\\\OrdersTableDataStore","HPOS_enabled":true,"HPOS_'
    'sync_enabled":false,"enabled_features":["analytics","marketplace","order_attribution","s'
    'ite_visibility_badge","remote_logging","email_improvements","blueprint","point_of_sale",'
    '"custom_order_tables"]},"security":{"secure_connection":true,"hide_errors":true},"pages"'
    ':[{"page_name":"Shop base","page_id":"6","page_set":true,"page_exists":true,"page_visibl'
    'e":true,"shortcode":"","block":"","shortcode_required":false,"shortcode_present":false,"'
    'block_present":false,"block_required":false},{"page_name":"Cart","page_id":"7","page_set'
    '":true,"page_exists":true,"page_visible":true,"shortcode":"[woocommerce_cart]","block":"'
    'woocommerce/cart","shortcode_required":true,"shortcode_present":false,"block_present":tr'
    'ue,"block_required":true}],"post_type_counts":[{"type":"attachment","count":"1"},{"type"'
    ':"page","count":"7"},{"type":"post","count":"1"},{"type":"revision","count":"1"},{"type"'
    ':"wp_navigation","count":"1"}],"logging":{"logging_enabled":true,"default_handler":"Auto'
    'mattic\\\\WooCommerce\\\\Internal\\\\Admin\\\\Logging\\\\LogHandlerFileV2","retention_period_days"'
    ':30,"level_threshold":"","log_directory_size":"2 KB"}}'
)


# Templates are copied for every generated object: keep their encoded text (they never change).
_TEMPLATE_TEXTS: Final[dict[int, str]] = {
    id(t): json.dumps(t)
    for t in (
        _CUSTOMER,
        _ORDER,
        _ORDER["line_items"][0],
        _ORDER["coupon_lines"][0],
        _ORDER["shipping_lines"][0],
        _PRODUCT_SIMPLE,
        _PRODUCT_VARIABLE,
        _VARIATION,
        _COUPON,
        _REFUND,
        _WEBHOOK,
        _SYSTEM_STATUS,
    )
}


# --------------------------------------------------------------------------------------------
# PHP and WordPress behaviour the fake must copy byte for byte.


def php_json(value: Any) -> str:
    """``wp_json_encode()`` as WordPress REST sends it: compact, ``\\/`` and ``\\uXXXX`` escapes."""
    # PHP escapes every '/', and '/' only ever occurs inside JSON strings, so replacing it in
    # the encoded text is exact.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def _clone(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of JSON data (the C encoder and decoder are ~10x faster than deepcopy)."""
    text = _TEMPLATE_TEXTS.get(id(value))
    copied: dict[str, Any] = json.loads(text if text is not None else json.dumps(value))
    return copied


def _php_empty(value: Any) -> bool:
    """PHP ``empty()`` for request values: unset, "" and "0" are empty."""
    return value is None or value == "" or value == "0" or value == [] or value == {}


def _rawurlencode(value: str) -> str:
    return quote(value, safe="")


def _php_var_name(name: str) -> str:
    # php_register_variable_ex(): leading spaces dropped, ' ' and '.' become '_'.
    return name.lstrip(" ").replace(".", "_").replace(" ", "_")


def parse_php_query(query: str, *, plus_is_space: bool = True) -> dict[str, Any]:
    """PHP ``parse_str``/``$_GET``: ``a[]=`` lists, ``a[k]=`` maps, last scalar wins."""
    result: dict[str, Any] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        decode = unquote_plus if plus_is_space else unquote
        key, value = decode(raw_key), decode(raw_value)
        bracket = key.find("[")
        if bracket <= 0 or "]" not in key[bracket:]:
            result[_php_var_name(key.replace("[", "_"))] = value
            continue
        base = _php_var_name(key[:bracket])
        subkeys = re.findall(r"\[([^\]]*)\]", key[bracket:])
        node: Any = result.setdefault(base, {})
        if not isinstance(node, dict):
            node = result[base] = {}
        for i, sub in enumerate(subkeys):
            last = i == len(subkeys) - 1
            if sub == "":
                sub = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[sub] = value
            else:
                child = node.get(sub)
                if not isinstance(child, dict):
                    child = node[sub] = {}
                node = child
    return result


def _php_list(value: Any) -> list[str]:
    """``wp_parse_list``: an array's values, or a string split on commas and spaces."""
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [p for p in re.split(r"[\s,]+", str(value)) if p]


def wp_sprintf_l(items: Sequence[str]) -> str:
    """WordPress' ``%l``: "a and b", "a, b, and c"."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _wc_oauth_signature(
    method: str, base_url: str, params: Mapping[str, Any], secret: str, algorithm: str
) -> str:
    """``WC_REST_Authentication::check_oauth_signature()``, nested arrays included."""

    def join(values: Mapping[str, Any], out: list[str], prefix: str = "") -> list[str]:
        # join_with_equals_sign(): nested keys become key%5Bsub%5D, each "k=v" encoded again.
        for key, value in values.items():
            name = f"{prefix}%5B{key}%5D" if prefix else key
            if isinstance(value, dict):
                join(value, out, name)
            else:
                out.append(_rawurlencode(f"{name}={value}"))
        return out

    def normalize(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normalize(v) for k, v in value.items()}
        return _rawurlencode(str(value))

    ordered = dict(sorted(params.items(), key=lambda kv: kv[0].encode()))  # uksort strcmp
    normalized = {_rawurlencode(k): normalize(v) for k, v in ordered.items()}
    base = f"{method}&{_rawurlencode(base_url)}&{'%26'.join(join(normalized, []))}"
    digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
    mac = hmac.new(f"{secret}&".encode(), base.encode(), digest).digest()
    return base64.b64encode(mac).decode("ascii")


# --------------------------------------------------------------------------------------------
# Time, keys, records.


class FakeClock:
    """The store's ``time()``: frozen, moved only by the test (`advance`, `set`)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = int(time.time() if start is None else start)

    def now(self) -> int:
        """Seconds since the epoch, UTC."""
        return self._now

    def advance(self, seconds: float) -> int:
        """Move forward (WordPress dates have one-second granularity)."""
        self._now += math.ceil(seconds)
        return self._now

    def set(self, timestamp: float) -> None:
        """Jump to `timestamp`."""
        self._now = int(timestamp)


def _wc_date(ts: int | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class ApiKey:
    """A row of ``wp_woocommerce_api_keys`` and what its WordPress user may do."""

    consumer_key: str
    consumer_secret: str
    permissions: Literal["read", "write", "read_write"] = "read_write"
    capable: bool = True  # the key's user is an Administrator / Shop manager
    nonces: dict[int, str] = field(default_factory=dict)  # timestamp → nonce, as WC stores it


@dataclass
class Record:
    """One stored object with the timestamps the queries filter on."""

    obj: dict[str, Any]
    created: int
    modified: int
    parent: int = 0


@dataclass
class RequestRecord:
    """What the fake saw: arrival time (loop clock), request line, status, body bytes sent.

    `authorization` is the scheme of the Authorization header the client sent ("Basic",
    "OAuth"; "" without one), before a `strip_authorization` host drops it.
    """

    at: float
    method: str
    path: str
    query: str
    status: int = 0
    bytes_sent: int = 0
    auth: str = ""
    authorization: str = ""


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _plain(value: Decimal) -> str:
    # WooCommerce stores coupon discounts without trailing zeros ("3.6", "5").
    text = format(value.normalize(), "f")
    return text


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _price_span(amount: str, hidden: bool = False) -> str:
    aria = ' aria-hidden="true"' if hidden else ""
    return (
        f'<span class="woocommerce-Price-amount amount"{aria}><bdi><span class="woocommerce-'
        f'Price-currencySymbol">&euro;</span>{amount}</bdi></span>'
    )


def _price_html(regular: str, sale: str) -> str:
    if not sale:
        return _price_span(regular)
    return (
        f'<del aria-hidden="true">{_price_span(regular)}</del> <span class="screen-reader-text">'
        f'Original price was: &euro;{regular}.</span><ins aria-hidden="true">'
        f'{_price_span(sale)}</ins><span class="screen-reader-text">Current price is: '
        f"&euro;{sale}.</span>"
    )


def _range_html(low: str, high: str) -> str:
    if low == high:
        return _price_span(low)
    return (
        f'{_price_span(low, True)} <span aria-hidden="true">&ndash;</span> '
        f'{_price_span(high, True)}<span class="screen-reader-text">Price range: &euro;{low} '
        f"through &euro;{high}</span>"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


FIRST_NAMES: Final = (
    "Alice", "Bob", "Zoë", "Chloé", "Lucas", "Emma", "Noah", "Léa", "Hugo", "Jules", "Inès",
    "Mia", "Louis", "Anaïs", "Paul", "Sofia", "Éloïse", "Tom", "Nora", "Ben",
)  # fmt: skip
LAST_NAMES: Final = (
    "Martin", "Dupont", "Lefèvre", "Bernard", "Durand", "Moreau", "Müller", "Petit", "Roux",
    "Fournier", "Girard", "Bonnet", "Lambert", "Fontaine", "Rousseau", "Núñez",
)  # fmt: skip
CITIES: Final = (
    ("Paris", "75002", "FR"), ("Lyon", "69001", "FR"), ("Marseille", "13001", "FR"),
    ("Nice", "06000", "FR"), ("Bruxelles", "1000", "BE"), ("Berlin", "10115", "DE"),
)  # fmt: skip
COLOURS: Final = ("Blue", "Red", "Green", "Black", "White", "Grey", "Yellow", "Navy")
GOODS: Final = ("T-Shirt", "Mug", "Cap", "Poster", "Notebook", "Tote Bag", "Socks", "Scarf")
SIZES: Final = ("S", "M", "L", "XL")
ORDER_STATUSES: Final = (
    "pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed",
)  # fmt: skip
STATUS_WEIGHTS: Final = (5, 25, 5, 50, 5, 5, 5)
WEBHOOK_HOOKS: Final[dict[str, list[str]]] = {
    # WC_Webhook::get_default_topic_hooks() as 10.0.2 reports them (recording 24).
    "coupon.created": ["woocommerce_process_shop_coupon_meta", "woocommerce_new_coupon"],
    "coupon.updated": ["woocommerce_process_shop_coupon_meta", "woocommerce_update_coupon"],
    "coupon.deleted": ["wp_trash_post"],
    "coupon.restored": ["untrashed_post"],
    "customer.created": [
        "user_register",
        "woocommerce_created_customer",
        "woocommerce_new_customer",
    ],
    "customer.updated": ["profile_update", "woocommerce_update_customer"],
    "customer.deleted": ["delete_user"],
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded"],
    "order.deleted": ["wp_trash_post", "woocommerce_trash_order"],
    "order.restored": ["untrashed_post", "woocommerce_untrash_order"],
    "product.created": [
        "woocommerce_process_product_meta",
        "woocommerce_new_product",
        "woocommerce_new_product_variation",
    ],
    "product.updated": [
        "woocommerce_process_product_meta",
        "woocommerce_update_product",
        "woocommerce_update_product_variation",
    ],
    "product.deleted": ["wp_trash_post"],
    "product.restored": ["untrashed_post"],
}


# --------------------------------------------------------------------------------------------
# The data: no sockets here.


class FakeStore:
    """Customers, products (with variations), coupons, orders (with refunds) and webhooks."""

    def __init__(self, clock: FakeClock, seed: int = 1) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.records: dict[str, dict[int, Record]] = {name: {} for name in RESOURCES}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.webhook_secrets: dict[int, str] = {}
        self._next_user = 2  # user 1 is the administrator who owns the keys
        self._next_post = 10
        self._next_item = 1
        self._next_meta = 20
        self._next_webhook = 1
        # Ids that generated orders pick from (a list per add, not a scan per order).
        self._pick: dict[str, list[int]] = {"customers": [], "products": []}

    # -- generation -----------------------------------------------------------------------

    def populate(
        self,
        *,
        customers: int,
        products: int,
        coupons: int,
        orders: int,
        variable_every: int = 4,
        spacing: int = 37,
    ) -> None:
        """Fill the store; objects are dated before now, one every ~`spacing` seconds."""
        now = self.clock.now()
        posts = products + coupons + orders
        t = now - (posts + customers + 1) * spacing
        for _ in range(customers):
            t += spacing
            self.add_customer(at=t)
        for i in range(products):
            t += spacing
            variable = variable_every and i % variable_every == variable_every - 1
            self.add_product("variable" if variable else "simple", at=t)
        for _ in range(coupons):
            t += spacing
            self.add_coupon(at=t)
        for _ in range(orders):
            t += self.rng.randint(spacing // 2, spacing * 3 // 2)
            self.add_order(at=min(t, now))

    def _post_id(self) -> int:
        self._next_post += 1
        return self._next_post - 1

    def _meta(self, key: str, value: Any, display: bool = False) -> dict[str, Any]:
        self._next_meta += 1
        meta: dict[str, Any] = {"id": self._next_meta, "key": key, "value": value}
        if display:
            meta.update(display_key=key, display_value=value)
        return meta

    @staticmethod
    def _stamp(obj: dict[str, Any], created: int, modified: int) -> None:
        for key, ts in (("date_created", created), ("date_modified", modified)):
            if key in obj:
                obj[key] = _wc_date(ts)
            if f"{key}_gmt" in obj:
                obj[f"{key}_gmt"] = _wc_date(ts)

    def add_customer(self, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        """A registered customer (role ``customer``); `fields` override generated values."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        uid = self._next_user
        self._next_user += 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        username = f"{_slug(first.encode('ascii', 'ignore').decode()) or 'user'}{uid}"
        email = f"{username}@example.com"
        city, postcode, country = rng.choice(CITIES)
        phone = f"+336{rng.randint(10000000, 99999999)}" if rng.random() < 0.8 else ""
        obj = _clone(_CUSTOMER)
        address = {
            "first_name": first,
            "last_name": last,
            "company": "",
            "address_1": f"{rng.randint(1, 99)} Rue de Test",
            "address_2": "",
            "city": city,
            "postcode": postcode,
            "country": country,
            "state": "",
            "email": email,
            "phone": phone,
        }
        obj.update(
            id=uid,
            email=email,
            first_name=first,
            last_name=last,
            role="customer",
            username=username,
            is_paying_customer=False,
        )
        obj["billing"] = {k: address[k] for k in _CUSTOMER["billing"]}
        obj["shipping"] = {k: address[k] for k in _CUSTOMER["shipping"]}
        digest = hashlib.sha256(email.encode()).hexdigest()
        obj["avatar_url"] = f"https://secure.gravatar.com/avatar/{digest}?s=96&d=mm&r=g"
        obj["meta_data"] = [
            self._meta("default_password_nag", "1"),
            self._meta("brevo_opt_in", rng.choice(("yes", "no"))),
        ]
        if rng.random() < 0.3:
            obj["meta_data"].append(self._meta("loyalty_tier", rng.choice(("gold", "silver"))))
        self._apply(obj, fields)
        self._stamp(obj, at, at)
        self.records["customers"][uid] = Record(obj, at, at)
        self._pick["customers"].append(uid)
        return obj

    def add_product(
        self,
        kind: Literal["simple", "variable"] = "simple",
        *,
        at: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A published product; variable ones get 2–4 size variations."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        pid = self._post_id()
        name = f"{rng.choice(COLOURS)} {rng.choice(GOODS)}"
        slug = f"{_slug(name)}-{pid}"
        sku = f"{_slug(name).upper()}-{pid}"
        base = Decimal(rng.randint(5, 120)) + Decimal(rng.choice(("0.00", "0.99", "0.50")))
        template = _PRODUCT_VARIABLE if kind == "variable" else _PRODUCT_SIMPLE
        obj = _clone(template)
        obj.update(
            id=pid,
            name=name,
            slug=slug,
            permalink=f"{HOME_TOKEN}/product/{slug}/",
            sku=sku,
            total_sales=0,
            description=f"<p>{name}, made for tests.</p>\n",
            short_description=f"<p>A {name.lower()}.</p>\n",
            related_ids=[],
            meta_data=[],
        )
        if kind == "simple":
            regular = _money(base)
            sale = _money(base * Decimal("0.8")) if rng.random() < 0.2 else ""
            managed = rng.random() < 0.5
            obj.update(
                price=sale or regular,
                regular_price=regular,
                sale_price=sale,
                on_sale=bool(sale),
                manage_stock=managed,
                stock_quantity=rng.randint(0, 80) if managed else None,
                price_html=_price_html(regular, sale),
            )
            if rng.random() < 0.3:
                obj["meta_data"] = [self._meta("brand", "Loopback")]
            self._apply(obj, fields)
            self._stamp(obj, at, at)
            self.records["products"][pid] = Record(obj, at, at)
            self._pick["products"].append(pid)
            return obj
        sizes = list(SIZES[: rng.randint(2, 4)])
        obj["attributes"] = [
            {
                "id": 0,
                "name": "Size",
                "slug": "Size",
                "position": 0,
                "visible": True,
                "variation": True,
                "options": sizes,
            }
        ]
        obj["default_attributes"] = [{"id": 0, "name": "Size", "option": sizes[0]}]
        self._stamp(obj, at, at)
        self.records["products"][pid] = Record(obj, at, at)
        self._pick["products"].append(pid)
        variations = [self._add_variation(obj, size, base, at) for size in sizes]
        obj["variations"] = [v["id"] for v in variations]
        self._sync_variable(obj)
        self._apply(obj, fields)
        return obj

    def _add_variation(
        self, parent: dict[str, Any], size: str, base: Decimal, at: int
    ) -> dict[str, Any]:
        rng = self.rng
        vid = self._post_id()
        regular = _money(base + Decimal(SIZES.index(size)) * 3)
        sale = _money(Decimal(regular) * Decimal("0.85")) if rng.random() < 0.25 else ""
        obj = _clone(_VARIATION)
        obj.update(
            id=vid,
            permalink=f"{HOME_TOKEN}/product/{parent['slug']}/?attribute_size={size}",
            sku=f"{parent['sku']}-{size}",
            price=sale or regular,
            regular_price=regular,
            sale_price=sale,
            on_sale=bool(sale),
            attributes=[{"id": 0, "name": "Size", "slug": "size", "option": size}],
            name=size,
            parent_id=parent["id"],
        )
        self._stamp(obj, at, at)
        self.records["variations"][vid] = Record(obj, at, at, parent=parent["id"])
        return obj

    def _sync_variable(self, product: dict[str, Any]) -> None:
        prices = sorted(
            Decimal(self.records["variations"][v].obj["price"]) for v in product["variations"]
        )
        low, high = _money(prices[0]), _money(prices[-1])
        product.update(
            price=low,
            on_sale=any(
                self.records["variations"][v].obj["on_sale"] for v in product["variations"]
            ),
            price_html=_range_html(low, high),
        )

    def add_coupon(self, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        """A published coupon, percent or fixed cart."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        cid = self._post_id()
        percent = rng.random() < 0.5
        amount = Decimal(rng.choice((5, 10, 15, 20)))
        obj = _clone(_COUPON)
        expires = _wc_date(at + 365 * 86400) if rng.random() < 0.5 else None
        obj.update(
            id=cid,
            code=f"{'save' if percent else 'off'}{int(amount)}-{cid}",
            amount=_money(amount),
            discount_type="percent" if percent else "fixed_cart",
            description=f"{int(amount)}{'%' if percent else ' EUR'} off",
            date_expires=expires,
            date_expires_gmt=expires,
            individual_use=rng.random() < 0.3,
            usage_limit_per_user=1 if rng.random() < 0.3 else None,
            minimum_amount="0.00" if percent else "20.00",
        )
        self._apply(obj, fields)
        self._stamp(obj, at, at)
        self.records["coupons"][cid] = Record(obj, at, at)
        return obj

    def add_order(self, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        """An order of 1–3 products from the store, by a customer or a guest."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        oid = self._post_id()
        users = self._pick["customers"]
        customer = (
            self.records["customers"][rng.choice(users)].obj
            if users and rng.random() < 0.8
            else None
        )
        if "customer_id" in fields:  # a given customer (0: a guest)
            chosen = fields.pop("customer_id")
            customer = self.records["customers"][chosen].obj if chosen else None
        if customer is not None:
            billing = {k: customer["billing"].get(k, "") for k in _ORDER["billing"]}
            shipping = {k: customer["shipping"].get(k, "") for k in _ORDER["shipping"]}
        else:
            city, postcode, country = rng.choice(CITIES)
            guest = rng.randint(1000, 9999)
            billing = dict.fromkeys(_ORDER["billing"], "")
            billing.update(
                first_name="Guest",
                last_name=f"Buyer{guest}",
                address_1="12 Rue de Test",
                city=city,
                postcode=postcode,
                country=country,
                email=f"guest{guest}@example.com",
                phone="+33600000000",
            )
            shipping = dict.fromkeys(_ORDER["shipping"], "")
        status = fields.pop("status", None) or rng.choices(ORDER_STATUSES, STATUS_WEIGHTS)[0]
        lines = self._order_lines(rng.randint(1, 3))
        subtotal = sum((Decimal(line["subtotal"]) for line in lines), Decimal(0))
        coupon_lines, discount = self._order_coupon(lines, subtotal)
        shipping_total = Decimal("4.90") if rng.random() < 0.7 else Decimal(0)
        total = subtotal - discount + shipping_total
        obj = _clone(_ORDER)
        key = "wc_order_" + "".join(
            rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789", k=13)
        )
        obj.update(
            id=oid,
            status=status,
            discount_total=_money(discount),
            shipping_total=_money(shipping_total),
            total=_money(total),
            customer_id=customer["id"] if customer else 0,
            order_key=key,
            billing=billing,
            shipping=shipping,
            created_via=rng.choice(("checkout", "rest-api")),
            number=str(oid),
            meta_data=[self._meta("_brevo_test", f"o{oid}")] if rng.random() < 0.2 else [],
            line_items=lines,
            shipping_lines=[self._shipping_line(shipping_total)] if shipping_total else [],
            coupon_lines=coupon_lines,
            refunds=[],
            payment_url=f"{HOME_TOKEN}/checkout/order-pay/{oid}/?pay_for_order=true&key={key}",
        )
        self._stamp(obj, at, at)
        self.records["orders"][oid] = Record(obj, at, at)
        self._set_status(obj, status, at)
        if status == "refunded":
            self._refund(obj, at)
        self._apply(obj, fields)
        return obj

    def _order_lines(self, count: int) -> list[dict[str, Any]]:
        rng = self.rng
        ids = self._pick["products"]
        picked = [self.records["products"][i].obj for i in rng.sample(ids, min(count, len(ids)))]
        lines: list[dict[str, Any]] = []
        template = _ORDER["line_items"][0]
        for product in (p for p in picked if p["status"] == "publish"):
            line = _clone(template)
            variation: dict[str, Any] | None = None
            if product["type"] == "variable" and product["variations"]:
                variation = self.records["variations"][rng.choice(product["variations"])].obj
            item = variation or product
            quantity = rng.randint(1, 3)
            price = Decimal(item["price"] or "0")
            amount = price * quantity
            self._next_item += 1
            line.update(
                id=self._next_item,
                name=f"{product['name']} - {variation['name']}" if variation else product["name"],
                product_id=product["id"],
                variation_id=variation["id"] if variation else 0,
                quantity=quantity,
                subtotal=_money(amount),
                total=_money(amount),
                meta_data=(
                    [self._meta("size", variation["name"], display=True)] if variation else []
                ),
                sku=item["sku"],
                price=_number(price),
                image={"id": 0, "src": ""} if variation else {"id": "", "src": ""},
                parent_name=product["name"] if variation else None,
            )
            if variation:
                line["meta_data"][0]["display_key"] = "Size"
            lines.append(line)
        return lines

    def _order_coupon(
        self, lines: list[dict[str, Any]], subtotal: Decimal
    ) -> tuple[list[dict[str, Any]], Decimal]:
        coupons = [r.obj for r in self.records["coupons"].values()]
        if not coupons or not lines or self.rng.random() >= 0.25:
            return [], Decimal(0)
        coupon = self.rng.choice(coupons)
        amount = Decimal(coupon["amount"])
        percent = coupon["discount_type"] == "percent"
        discount = (subtotal * amount / 100) if percent else min(amount, subtotal)
        discount = discount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        left = discount
        for i, line in enumerate(lines):
            share = (
                left
                if i == len(lines) - 1
                else (Decimal(line["subtotal"]) * discount / subtotal).quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP
                )
            )
            left -= share
            line["total"] = _money(Decimal(line["subtotal"]) - share)
            line["price"] = _number(
                (Decimal(line["total"]) / line["quantity"]).quantize(Decimal("0.01"))
            )
        info = json.dumps(
            [coupon["id"], coupon["code"], "percent" if percent else None, _number(amount)],
            separators=(",", ":"),
        )
        self._next_item += 1
        line = _clone(_ORDER["coupon_lines"][0])
        line.update(
            id=self._next_item,
            code=coupon["code"],
            discount=_plain(discount),
            discount_tax="0",
            meta_data=[self._meta("coupon_info", info, display=True)],
            discount_type=coupon["discount_type"],
            nominal_amount=_number(amount),
        )
        return [line], discount

    def _shipping_line(self, total: Decimal) -> dict[str, Any]:
        self._next_item += 1
        line: dict[str, Any] = _clone(_ORDER["shipping_lines"][0])
        line.update(id=self._next_item, total=_money(total))
        return line

    def _set_status(self, obj: dict[str, Any], status: str, at: int) -> None:
        obj["status"] = status
        paid = status in ("processing", "completed", "refunded")
        if paid and obj["date_paid"] is None:
            obj["date_paid"] = obj["date_paid_gmt"] = _wc_date(at)
        if not paid and status in ("pending", "on-hold", "failed"):
            obj["date_paid"] = obj["date_paid_gmt"] = None
        if status == "completed" and obj["date_completed"] is None:
            obj["date_completed"] = obj["date_completed_gmt"] = _wc_date(at)
        elif status != "completed":
            obj["date_completed"] = obj["date_completed_gmt"] = None
        # WC_Order::is_editable(), needs_payment() (NOTES §2.2, newer order fields).
        obj["is_editable"] = status in ("pending", "on-hold", "auto-draft")
        obj["needs_payment"] = status in ("pending", "failed") and Decimal(obj["total"]) > 0
        obj["needs_processing"] = True

    def _refund(self, order: dict[str, Any], at: int) -> dict[str, Any]:
        rid = self._post_id()
        refund = _clone(_REFUND)
        lines = []
        for item in order["line_items"]:
            line = _clone(item)
            self._next_item += 1
            line.update(
                id=self._next_item,
                quantity=-item["quantity"],
                subtotal=_money(-Decimal(item["total"])),
                total=_money(-Decimal(item["total"])),
                meta_data=[self._meta("_refunded_item_id", str(item["id"]), display=True)],
            )
            lines.append(line)
        reason = self.rng.choice(("Customer changed mind", "Damaged in transit", ""))
        refund.update(
            id=rid,
            amount=order["total"],
            reason=reason,
            refunded_by=1,
            refunded_payment=False,
            meta_data=[],
            line_items=lines,
            shipping_lines=[],
            tax_lines=[],
            fee_lines=[],
        )
        self._stamp(refund, at, at)
        self.records["refunds"][rid] = Record(refund, at, at, parent=order["id"])
        order["refunds"].append({"id": rid, "reason": reason, "total": f"-{order['total']}"})
        return refund

    # -- mutators used by tests -----------------------------------------------------------

    @staticmethod
    def _apply(obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(obj.get(key), dict):
                obj[key].update(value)
            else:
                obj[key] = value

    def update(self, resource: str, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change top-level fields (dicts are merged) and bump ``date_modified`` to now."""
        record = self.records[resource][object_id]
        now = self.clock.now()
        if resource == "orders" and "status" in changes:
            self._set_status(record.obj, changes.pop("status"), now)
        self._apply(record.obj, changes)
        record.modified = now
        self._stamp(record.obj, record.created, now)
        if resource == "variations":
            parent = self.records["products"].get(record.parent)
            if parent is not None:
                self._sync_variable(parent.obj)
        return record.obj

    def delete(self, resource: str, object_id: int) -> None:
        """Delete permanently (``force=true``): no trash, no webhook, gone from every list."""
        self.records[resource].pop(object_id)
        if object_id in self._pick.get(resource, []):
            self._pick[resource].remove(object_id)
        children = {"orders": "refunds", "products": "variations"}.get(resource)
        if children:
            for child in [i for i, r in self.records[children].items() if r.parent == object_id]:
                del self.records[children][child]
        if resource == "variations":
            for parent in self.records["products"].values():
                if object_id in parent.obj.get("variations", []):
                    parent.obj["variations"].remove(object_id)

    def trash(self, resource: str, object_id: int) -> dict[str, Any]:
        """Move a post to the trash (what WooCommerce calls "deleted"); lists skip it."""
        return self.update(resource, object_id, status="trash")

    def refund(self, order_id: int) -> dict[str, Any]:
        """Fully refund an order now: a refund object, status refunded, modified bumped."""
        order = self.update("orders", order_id, status="refunded")
        return self._refund(order, self.clock.now())

    def add_webhook(
        self, name: str, topic: str, delivery_url: str, secret: str, status: str = "active"
    ) -> dict[str, Any]:
        """A webhook row as ``POST /webhooks`` stores it (date_modified null until saved again)."""
        wid = self._next_webhook
        self._next_webhook += 1
        now = _wc_date(self.clock.now())
        hook = _clone(_WEBHOOK)
        resource, _, event = topic.partition(".")
        hook.update(
            id=wid,
            name=name,
            status=status,
            topic=topic,
            resource=resource,
            event=event,
            hooks=WEBHOOK_HOOKS.get(topic, [f"{event}" if resource == "action" else topic]),
            delivery_url=delivery_url,
            date_created=now,
            date_created_gmt=now,
            date_modified=None,
            date_modified_gmt=None,
        )
        self.webhooks[wid] = hook
        self.webhook_secrets[wid] = secret
        return hook


# --------------------------------------------------------------------------------------------
# WordPress REST pieces.


class WpError(Exception):
    """A ``WP_Error`` on its way to the client as ``{code, message, data:{status,…}}``."""

    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(code)
        self.code, self.message, self.status, self.data = code, message, status, data

    def body(self) -> dict[str, Any]:
        """The JSON WordPress sends."""
        return {
            "code": self.code,
            "message": self.message,
            "data": {"status": self.status, **self.data},
        }


@dataclass
class _Request:
    method: str
    raw_uri: str  # REQUEST_URI, undecoded
    raw_path: str
    get: dict[str, Any]  # $_GET
    post: dict[str, Any]  # $_POST (form bodies only)
    json: Any
    headers: Mapping[str, str]
    query_pairs: list[tuple[str, str]]  # request order, for Link headers


@dataclass
class _Auth:
    user: ApiKey | None = None
    error: WpError | None = None
    method: str = ""


# Parameter specs, in registration order (WordPress validates and lists them in this order).
_Spec = tuple[str, dict[str, Any]]
_CONTEXT: Final[_Spec] = ("context", {"type": "enum", "enum": ["view", "edit"]})
_PAGE: Final[_Spec] = ("page", {"type": "integer", "minimum": 1})
_PER_PAGE: Final[_Spec] = ("per_page", {"type": "integer", "minimum": 1, "maximum": 100})
_OFFSET: Final[_Spec] = ("offset", {"type": "integer"})
_ORDER_DIR: Final[_Spec] = ("order", {"type": "enum", "enum": ["asc", "desc"]})
_CRUD_PARAMS: Final[list[_Spec]] = [
    _CONTEXT,
    _PAGE,
    _PER_PAGE,
    ("search", {"type": "string"}),
    ("after", {"type": "date-time"}),
    ("before", {"type": "date-time"}),
    ("modified_after", {"type": "date-time"}),
    ("modified_before", {"type": "date-time"}),
    ("dates_are_gmt", {"type": "boolean"}),
    ("exclude", {"type": "id_list"}),
    ("include", {"type": "id_list"}),
    _OFFSET,
    _ORDER_DIR,
    ("orderby", {"type": "enum", "enum": ["date", "id", "include", "title", "slug", "modified"]}),
]
_ORDER_STATUS_ENUM: Final = ["any", "trash", "auto-draft", *ORDER_STATUSES, "checkout-draft"]
_ORDERS_PARAMS: Final[list[_Spec]] = [
    *_CRUD_PARAMS,
    ("status", {"type": "enum_list", "enum": _ORDER_STATUS_ENUM}),
    ("customer", {"type": "integer"}),
    ("product", {"type": "integer"}),
    ("dp", {"type": "integer"}),
]
_PRODUCTS_PARAMS: Final[list[_Spec]] = [
    *_CRUD_PARAMS[:-1],
    (
        "orderby",
        {
            "type": "enum",
            "enum": [
                "date",
                "id",
                "include",
                "title",
                "slug",
                "modified",
                "price",
                "popularity",
                "rating",
            ],
        },
    ),
    (
        "status",
        {
            "type": "enum",
            "enum": ["any", "future", "trash", "draft", "pending", "private", "publish"],
        },
    ),
    ("type", {"type": "enum", "enum": ["simple", "grouped", "external", "variable"]}),
    ("sku", {"type": "string"}),
]
_COUPONS_PARAMS: Final[list[_Spec]] = [*_CRUD_PARAMS, ("code", {"type": "string"})]
_CUSTOMERS_PARAMS: Final[list[_Spec]] = [
    _CONTEXT,
    _PAGE,
    _PER_PAGE,
    ("search", {"type": "string"}),
    ("exclude", {"type": "id_list"}),
    ("include", {"type": "id_list"}),
    _OFFSET,
    _ORDER_DIR,
    ("orderby", {"type": "enum", "enum": ["id", "include", "name", "registered_date"]}),
    ("email", {"type": "email"}),
    (
        "role",
        {
            "type": "enum",
            "enum": [
                "all",
                "administrator",
                "editor",
                "author",
                "contributor",
                "subscriber",
                "customer",
                "shop_manager",
            ],
        },
    ),
]
_WEBHOOKS_PARAMS: Final[list[_Spec]] = [
    _CONTEXT,
    _PAGE,
    _PER_PAGE,
    ("search", {"type": "string"}),
    ("after", {"type": "date-time"}),
    ("before", {"type": "date-time"}),
    ("exclude", {"type": "id_list"}),
    ("include", {"type": "id_list"}),
    _OFFSET,
    _ORDER_DIR,
    ("orderby", {"type": "enum", "enum": ["date", "id", "title"]}),
    ("status", {"type": "enum", "enum": ["all", "active", "paused", "disabled"]}),
]
_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "crud": {"page": 1, "per_page": 10, "order": "desc", "orderby": "date"},
    "customers": {"page": 1, "per_page": 10, "order": "asc", "orderby": "name", "role": "customer"},
    "webhooks": {"page": 1, "per_page": 10, "order": "desc", "orderby": "date", "status": "all"},
}
# rest_parse_date(): the only date-time shapes WordPress accepts.
_DATE_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_INT_RE: Final = re.compile(r"^-?\d+$")
_TRUE_FALSE: Final = {"true": True, "1": True, "false": False, "0": False}


def _parse_wp_date(value: str) -> int | None:
    """Seconds since the epoch (site timezone UTC); None when WordPress would refuse it."""
    match = _DATE_RE.match(value)
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    try:
        ts = int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp())
    except ValueError:
        return None
    tz = match.group(8)
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
        ts -= sign * offset
    return ts


def _validate(specs: Sequence[_Spec], params: Mapping[str, Any]) -> dict[str, Any]:
    """``WP_REST_Request::has_valid_params()`` then ``sanitize_params()`` for our specs."""
    invalid: dict[str, str] = {}
    details: dict[str, Any] = {}
    clean: dict[str, Any] = {}

    def fail(name: str, code: str, message: str, data: Any = None) -> None:
        invalid[name] = message
        details[name] = {"code": code, "message": message, "data": data}

    for name, spec in specs:
        if name not in params:
            continue
        value = params[name]
        kind = spec["type"]
        if kind == "integer":
            text = str(value) if not isinstance(value, dict) else ""
            if not _INT_RE.match(text):
                fail(name, "rest_invalid_type", f"{name} is not of type integer.", {"param": name})
                continue
            number = int(text)
            low, high = spec.get("minimum"), spec.get("maximum")
            if low is not None and high is not None and not low <= number <= high:
                fail(
                    name,
                    "rest_out_of_bounds",
                    f"{name} must be between {low} (inclusive) and {high} (inclusive)",
                )
                continue
            if low is not None and high is None and number < low:
                fail(name, "rest_out_of_bounds", f"{name} must be greater than or equal to {low}")
                continue
            clean[name] = number
        elif kind == "enum":
            if value not in spec["enum"]:
                fail(
                    name, "rest_not_in_enum", f"{name} is not one of {wp_sprintf_l(spec['enum'])}."
                )
                continue
            clean[name] = value
        elif kind == "enum_list":
            items = _php_list(value)
            bad = [i for i, v in enumerate(items) if v not in spec["enum"]]
            if bad:
                fail(
                    name,
                    "rest_not_in_enum",
                    f"{name}[{bad[0]}] is not one of {wp_sprintf_l(spec['enum'])}.",
                )
                continue
            clean[name] = items
        elif kind == "id_list":
            items = _php_list(value)
            bad = [i for i, v in enumerate(items) if not _INT_RE.match(v)]
            if bad:
                fail(
                    name,
                    "rest_invalid_type",
                    f"{name}[{bad[0]}] is not of type integer.",
                    {"param": f"{name}[{bad[0]}]"},
                )
                continue
            clean[name] = [abs(int(v)) for v in items]
        elif kind == "date-time":
            ts = _parse_wp_date(str(value))
            if ts is None:
                fail(name, "rest_invalid_date", "Invalid date.")
                continue
            clean[name] = ts
        elif kind == "boolean":
            flag = _TRUE_FALSE.get(str(value).lower())
            if flag is None:
                fail(name, "rest_invalid_type", f"{name} is not of type boolean.", {"param": name})
                continue
            clean[name] = flag
        elif kind == "email":
            if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", str(value)):
                fail(name, "rest_invalid_email", "Invalid email address.")
                continue
            clean[name] = str(value)
        else:
            clean[name] = str(value)
    if invalid:
        raise WpError(
            "rest_invalid_param",
            f"Invalid parameter(s): {', '.join(invalid)}",
            400,
            params=invalid,
            details=details,
        )
    return clean


def _filter_fields(data: Any, fields_param: Any) -> Any:
    """``rest_filter_response_fields()``: keep only the requested (dotted) fields.

    WooCommerce always *computes* ``id`` (WC_REST_Controller::get_fields_for_response), but this
    WordPress filter runs after it on ``rest_post_dispatch`` and drops ``id`` unless asked for.
    """
    fields = [f.strip() for f in _php_list(fields_param) if f.strip()]
    if not fields:
        return data
    tree: dict[str, Any] = {}
    for name in fields:
        parts = name.split(".")
        node = tree
        skip = False
        for part in parts[:-1]:
            if node.get(part) is True:
                skip = True  # the parent is already included whole
                break
            node = node.setdefault(part, {})
        if not skip:
            node[parts[-1]] = True

    def intersect(value: Any, spec: dict[str, Any]) -> Any:
        if isinstance(value, list):
            # array_intersect_key() on a PHP list with string keys keeps nothing.
            return []
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            if key in spec:
                sub = spec[key]
                out[key] = intersect(item, sub) if isinstance(sub, dict) else item
        return out

    if isinstance(data, list):
        return [intersect(item, tree) for item in data]
    return intersect(data, tree)


def _build_query(pairs: Iterable[tuple[str, Any]]) -> str:
    """``build_query()`` via ``add_query_arg()``: values raw, arrays as ``key%5Bi%5D``."""
    out: list[str] = []
    for key, value in pairs:
        if isinstance(value, list | dict):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            out.extend(f"{key}%5B{i}%5D={v}" for i, v in items)
        else:
            out.append(f"{key}={value}")
    return "&".join(out)


# --------------------------------------------------------------------------------------------
# The server.


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    methods: dict[str, tuple[str, str]]  # METHOD → (handler name, permission kind)
    params: list[_Spec] = field(default_factory=list)
    defaults: str = "crud"
    manager: bool = False  # needs manage_woocommerce (webhooks, system_status)

    @property
    def allow(self) -> str:
        return ", ".join(self.methods)


_READ = {"GET": ("list", "list")}
_ITEM = {
    "GET": ("item", "read"),
    "POST": ("edit", "edit"),
    "PUT": ("edit", "edit"),
    "PATCH": ("edit", "edit"),
}


def _routes() -> list[_Route]:
    ns = re.escape(NAMESPACE)

    def r(path: str) -> re.Pattern[str]:
        return re.compile(f"^/{ns}/{path}$")

    collection = {**_READ, "POST": ("create", "create")}
    return [
        _Route(r("customers"), collection, _CUSTOMERS_PARAMS, "customers"),
        _Route(r(r"customers/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        _Route(r("orders"), collection, _ORDERS_PARAMS),
        _Route(r(r"orders/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        _Route(r(r"orders/(?P<parent>\d+)/refunds"), collection, _CRUD_PARAMS),
        _Route(
            r(r"orders/(?P<parent>\d+)/refunds/(?P<id>\d+)"), {"GET": ("item", "read")}, [_CONTEXT]
        ),
        _Route(r("products"), collection, _PRODUCTS_PARAMS),
        _Route(r(r"products/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        _Route(r(r"products/(?P<parent>\d+)/variations"), collection, _CRUD_PARAMS),
        _Route(r(r"products/(?P<parent>\d+)/variations/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        _Route(r("coupons"), collection, _COUPONS_PARAMS),
        _Route(r(r"coupons/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        _Route(r("webhooks"), collection, _WEBHOOKS_PARAMS, "webhooks", manager=True),
        _Route(
            r(r"webhooks/(?P<id>\d+)"),
            {**_ITEM, "DELETE": ("delete", "delete")},
            [_CONTEXT, ("force", {"type": "boolean"})],
            manager=True,
        ),
        _Route(r("system_status"), _READ, [_CONTEXT], manager=True),
    ]


ROUTES: Final = _routes()
_PERMISSION_ERRORS: Final = {
    "list": ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
    "read": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "create": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "edit": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "delete": (
        "woocommerce_rest_cannot_delete",
        "Sorry, you are not allowed to delete this resource.",
    ),
}
_INVALID_ID: Final = {
    "customers": ("wc_user_invalid_id", "Invalid user ID."),
    "orders": ("woocommerce_rest_shop_order_invalid_id", "Invalid ID."),
    "products": ("woocommerce_rest_product_invalid_id", "Invalid ID."),
    "variations": ("woocommerce_rest_product_variation_invalid_id", "Invalid ID."),
    "coupons": ("woocommerce_rest_shop_coupon_invalid_id", "Invalid ID."),
    "refunds": ("woocommerce_rest_shop_order_refund_invalid_id", "Invalid ID."),
    "webhooks": ("woocommerce_rest_shop_webhook_invalid_id", "Invalid ID."),
}
_HTML_404: Final = (
    '<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="UTF-8" />'
    "<title>Page not found &#8211; Fake Store</title></head>"
    '<body class="error404"><h1>Page not found</h1></body></html>\n'
)
_HTML_ERRORS: Final = {
    429: "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    "<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    503: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>"
    "\r\n</body>\r\n</html>\r\n",
}
# What WordPress answers on a fatal PHP error inside a REST request (wp_die JSON handler).
_CRITICAL_ERROR: Final = {
    "code": "internal_server_error",
    "message": '<p>There has been a critical error on this website.</p><p><a href="https://'
    'wordpress.org/documentation/article/faq-troubleshooting/">Learn more about troubleshooting '
    "WordPress.</a></p>",
    "data": {"status": 500},
    "additional_errors": [],
}


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    body: str | None


class WooFake:
    """The fake store as an HTTP(S) server; ``async with WooFake(...) as fake`` → `fake.url`."""

    def __init__(
        self,
        *,
        customers: int = 10,
        orders: int = 20,
        products: int = 8,
        coupons: int = 3,
        seed: int = 1,
        scheme: Literal["http", "https"] = "http",
        tls: bool | None = None,
        cert_names: Sequence[str] = ("127.0.0.1", "localhost"),
        host: str = "127.0.0.1",
        port: int = 0,
        home_path: str = "",
        clock: FakeClock | None = None,
        keys: Sequence[ApiKey] | None = None,
        delay: float = 0.0,
        max_per_minute: int | None = None,
        rest_enabled: bool = True,
        pretty_permalinks: bool = True,
        deliver_pings: bool = False,
        variable_every: int = 4,
        strip_headers: Sequence[str] = (),
        strip_authorization: bool = False,
        wp_cron: bool = True,
    ) -> None:
        self.clock = clock or FakeClock()
        self.store = FakeStore(self.clock, seed)
        self.store.populate(
            customers=customers,
            products=products,
            coupons=coupons,
            orders=orders,
            variable_every=variable_every,
        )
        key_rng = random.Random(f"keys-{seed}")
        self.keys: list[ApiKey] = (
            list(keys)
            if keys is not None
            else [
                ApiKey(
                    f"ck_{key_rng.getrandbits(160):040x}",
                    f"cs_{key_rng.getrandbits(160):040x}",
                )
            ]
        )
        self.scheme = scheme
        self.is_ssl = scheme == "https"  # what WordPress' is_ssl() says
        self.tls = (
            (scheme == "https" and shutil.which("openssl") is not None) if tls is None else tls
        )
        self.cert_names = tuple(cert_names)
        self.host = host
        self.port = port
        self.home_path = "/" + home_path.strip("/") if home_path.strip("/") else ""
        self.delay = delay
        self.max_per_minute = max_per_minute
        self.rest_enabled = rest_enabled
        self.pretty_permalinks = pretty_permalinks
        self.deliver_pings = deliver_pings
        # A cache or proxy in front of the store that drops headers (e.g. X-WP-TotalPages).
        self.strip_headers = tuple(strip_headers)
        # Apache running PHP as CGI/FastCGI without `CGIPassAuth On` (some shared hosts): the
        # Authorization header never reaches PHP, so Basic auth is never seen; the query is.
        self.strip_authorization = strip_authorization
        # `! DISABLE_WP_CRON` (system_status environment.wp_cron): Action Scheduler, and so
        # webhook delivery, runs only from WP-Cron (reference/woocommerce/NOTES.md §1.2).
        self.wp_cron = wp_cron
        self.requests: list[RequestRecord] = []
        self.pings: list[tuple[str, int | str]] = []
        self.ca_file: str | None = None
        self._faults: deque[_Fault] = deque()
        self._window: deque[float] = deque()
        self._runner: web.AppRunner | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen (port 0 picks a free port) and read the port back."""
        ssl_context: ssl.SSLContext | None = None
        if self.tls:
            ssl_context = await self._make_tls()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening and remove the temporary certificate."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _make_tls(self) -> ssl.SSLContext:
        """A self-signed certificate for `cert_names`, made by the openssl CLI."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("tls=True needs the openssl command")
        self._tmp = tempfile.TemporaryDirectory(prefix="woofake-")
        cert, key = Path(self._tmp.name, "cert.pem"), Path(self._tmp.name, "key.pem")
        san = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in self.cert_names)
        proc = await asyncio.create_subprocess_exec(
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN={self.cert_names[0]}", "-addext", f"subjectAltName={san}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"openssl failed: {err.decode(errors='replace')}")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.ca_file = str(cert)
        return context

    # -- what tests read ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store URL (WordPress' home URL): what the agent's store_url must be."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{self.home_path}"

    @property
    def home_url(self) -> str:
        """``home_url()`` as WordPress sees it (its scheme follows `is_ssl`)."""
        scheme = "https" if self.is_ssl else "http"
        return f"{scheme}://{self.host}:{self.port}{self.home_path}"

    @property
    def rest_root(self) -> str:
        """``rest_url()`` without the route."""
        if self.pretty_permalinks:
            return f"{self.home_url}/wp-json"
        return f"{self.home_url}/index.php?rest_route="

    @property
    def consumer_key(self) -> str:
        """The first key's consumer key."""
        return self.keys[0].consumer_key

    @property
    def consumer_secret(self) -> str:
        """The first key's consumer secret."""
        return self.keys[0].consumer_secret

    @property
    def bytes_sent(self) -> int:
        """Response body bytes sent so far."""
        return sum(r.bytes_sent for r in self.requests)

    def add_key(
        self,
        permissions: Literal["read", "write", "read_write"] = "read_write",
        capable: bool = True,
    ) -> ApiKey:
        """Another API key (e.g. a read-only one, or one whose user is not a shop manager)."""
        n = len(self.keys)
        key = ApiKey(
            f"ck_{n:04d}" + hashlib.sha1(f"k{n}".encode()).hexdigest()[4:],
            f"cs_{n:04d}" + hashlib.sha1(f"s{n}".encode()).hexdigest()[4:],
            permissions,
            capable,
        )
        self.keys.append(key)
        return key

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` before WordPress runs."""
        for _ in range(count):
            self._faults.append(_Fault(status, retry_after, body))

    def reset_counters(self) -> None:
        """Forget recorded requests."""
        self.requests.clear()

    def ids(self, resource: str) -> list[int]:
        """Ids of stored objects, ascending (trashed ones included)."""
        return sorted(self.store.records[resource])

    def object(self, resource: str, object_id: int) -> dict[str, Any]:
        """The object exactly as ``GET …/{resource}/{id}`` would return it."""
        record = self.store.records[resource][object_id]
        rendered: dict[str, Any] = json.loads(self._render(self._with_links(resource, record)))
        return rendered

    # Mutators (the store does the work; these keep tests short).

    def add_customer(self, **fields: Any) -> dict[str, Any]:
        """Create a customer now."""
        return self.store.add_customer(**fields)

    def add_order(self, **fields: Any) -> dict[str, Any]:
        """Create an order now."""
        return self.store.add_order(**fields)

    def add_product(
        self, kind: Literal["simple", "variable"] = "simple", **fields: Any
    ) -> dict[str, Any]:
        """Create a product now."""
        return self.store.add_product(kind, **fields)

    def add_coupon(self, **fields: Any) -> dict[str, Any]:
        """Create a coupon now."""
        return self.store.add_coupon(**fields)

    def update(self, resource: str, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change an object and bump its ``date_modified_gmt`` to the clock."""
        return self.store.update(resource, object_id, **changes)

    def update_order(self, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change an order (``status=`` also sets the paid/completed dates)."""
        return self.store.update("orders", object_id, **changes)

    def update_customer(self, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change a customer."""
        return self.store.update("customers", object_id, **changes)

    def update_product(self, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change a product."""
        return self.store.update("products", object_id, **changes)

    def delete(self, resource: str, object_id: int) -> None:
        """Delete permanently (no webhook fires for this in WooCommerce)."""
        self.store.delete(resource, object_id)

    def trash(self, resource: str, object_id: int) -> dict[str, Any]:
        """Move to the trash."""
        return self.store.trash(resource, object_id)

    # -- the request pipeline -------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        record = RequestRecord(loop.time(), request.method, request.path, request.query_string)
        record.authorization = request.headers.get("Authorization", "").partition(" ")[0]
        self.requests.append(record)
        response = await self._respond(request, record)
        for name in self.strip_headers:
            response.headers.popall(name, None)
        record.status = response.status
        record.bytes_sent = len(response.body) if isinstance(response.body, bytes) else 0
        return response

    async def _respond(self, request: web.Request, record: RequestRecord) -> web.Response:
        # What a shared host does before PHP runs: its request budget, then scripted failures.
        if self.max_per_minute:
            now = record.at
            while self._window and self._window[0] <= now - 60:
                self._window.popleft()
            if len(self._window) >= self.max_per_minute:
                wait = max(1, math.ceil(self._window[0] + 60 - now))
                return self._html(429, _HTML_ERRORS[429], {"Retry-After": str(wait)})
            self._window.append(now)
        if self._faults:
            fault = self._faults.popleft()
            extra = (
                {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            )
            if fault.body is not None:
                return self._html(fault.status, fault.body, extra)
            if fault.status == 500:
                return self._json(500, php_json(_CRITICAL_ERROR), extra)
            page = _HTML_ERRORS.get(fault.status, f"<html><body>{fault.status}</body></html>\n")
            return self._html(fault.status, page, extra)
        if self.delay:
            await asyncio.sleep(self.delay)
        body = await request.read()
        req = _Request(
            method=request.method.upper(),
            raw_uri=request.raw_path,
            raw_path=request.raw_path.partition("?")[0],
            get=parse_php_query(request.query_string),
            post={},
            json=None,
            headers=(
                {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
                if self.strip_authorization
                else request.headers
            ),
            query_pairs=[
                (unquote_plus(k), unquote_plus(v))
                for k, _, v in (p.partition("=") for p in request.query_string.split("&") if p)
            ],
        )
        content_type = request.headers.get("Content-Type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            req.post = parse_php_query(body.decode("utf-8", "replace"))
        elif body and "json" in content_type:
            try:
                req.json = json.loads(body)
            except ValueError:
                return self._error(
                    WpError("rest_invalid_json", "Invalid JSON body passed.", 400, details={}),
                    _Auth(),
                )
        return await self._wordpress(req, record)

    def _route_of(self, req: _Request) -> str | None:
        """The REST route WordPress serves for this URL, or None for a normal (404) page."""
        path = unquote(req.raw_path)
        if self.home_path and not (path == self.home_path or path.startswith(self.home_path + "/")):
            return None
        rel = path[len(self.home_path) :]
        rest_route = req.get.get("rest_route")
        if isinstance(rest_route, str):
            return "/" + rest_route.strip("/")
        if self.pretty_permalinks and (rel == "/wp-json" or rel.startswith("/wp-json/")):
            return "/" + rel[len("/wp-json") :].strip("/")
        return None

    async def _wordpress(self, req: _Request, record: RequestRecord) -> web.Response:
        route_path = self._route_of(req)
        if route_path is None:
            return self._html(404, _HTML_404)
        auth = self._authenticate(req)
        record.auth = auth.method
        if auth.error is not None:
            return self._error(auth.error, auth)
        route: _Route | None = None
        try:
            # rest_pre_dispatch: WC_REST_Authentication::check_user_permissions().
            if auth.user is not None:
                self._check_key_permissions(auth.user, req.method)
            if route_path == "/":
                return self._json(
                    200, php_json({"name": "Fake Store", "namespaces": [NAMESPACE]}), {}
                )
            route, match, handler_name, perm = self._match(route_path, req.method)
            params: dict[str, Any] = {k: v for k, v in req.get.items() if k != "rest_route"}
            if isinstance(req.json, dict):
                params.update(req.json)
            params.update(req.post)
            clean = {**_DEFAULTS.get(route.defaults, {}), **_validate(route.params, params)}
            resource = self._resource(route_path)
            self._check_permission(route, resource, match, perm, auth)
            status, data, headers = await self._dispatch(
                resource, handler_name, req, match, clean, params
            )
        except WpError as error:
            allow = {"Allow": route.allow} if route is not None and error.status == 404 else {}
            return self._error(error, auth, allow)
        if "_fields" in req.get:  # rest_post_dispatch, errors excepted (they were raised)
            data = _filter_fields(data, req.get["_fields"])
        headers = {**headers, "Allow": route.allow}
        return self._json(status, self._render(data), headers, logged_in=auth.user is not None)

    # -- authentication (WC_REST_Authentication, 10.0.2) ----------------------------------

    def _authenticate(self, req: _Request) -> _Auth:
        auth = _Auth()
        # is_request_to_rest_api() in 10.0.2: the REQUEST_URI must contain "wp-json/wc/" (or
        # "wp-json/wc-"), so ?rest_route=/wc/v3/… is never authenticated (recording README).
        if "wp-json/wc/" not in req.raw_uri and "wp-json/wc-" not in req.raw_uri:
            return auth
        if self.is_ssl:
            self._basic(req, auth)
            if auth.user is not None:
                return auth
        self._oauth(req, auth)
        return auth

    def _find_key(self, consumer_key: str) -> ApiKey | None:
        wanted = consumer_key.strip()  # sanitize_text_field()
        return next((k for k in self.keys if hmac.compare_digest(k.consumer_key, wanted)), None)

    def _basic(self, req: _Request, auth: _Auth) -> None:
        auth.method = "basic_auth"
        key = req.get.get("consumer_key")
        secret = req.get.get("consumer_secret")
        if _php_empty(key) or _php_empty(secret) or not isinstance(key, str):
            key = secret = None
            header = req.headers.get("Authorization", "")
            if header[:6].lower() == "basic ":
                try:
                    user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
                except ValueError:
                    user = password = ""
                if not _php_empty(user) and not _php_empty(password):
                    key, secret = user, password
        if key is None or secret is None or not isinstance(secret, str):
            return
        found = self._find_key(key)
        if found is None:
            return  # unknown key: no error, the request goes on unauthenticated
        if not hmac.compare_digest(found.consumer_secret, secret):
            auth.error = WpError(
                "woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401
            )
            auth.user = None
            return
        auth.user = found

    def _oauth(self, req: _Request, auth: _Auth) -> None:
        auth.method = "oauth1"
        params: dict[str, Any] = {**req.get, **req.post}
        header = req.headers.get("Authorization", "").strip()
        if header.startswith("OAuth "):
            for name, quoted, bare in re.findall(
                r'(oauth_[a-z_-]*)=(?::?"([^"]*)"|([^,]*))', header
            ):
                params[name] = unquote_plus(quoted or bare)
        required = (
            "oauth_consumer_key",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
        )
        missing = [name for name in required if _php_empty(params.get(name))]
        if len(missing) == len(required):
            return  # not trying OAuth at all
        if missing:
            plural = "s" if len(missing) > 1 else ""
            auth.error = WpError(
                "woocommerce_rest_authentication_missing_parameter",
                f"Missing OAuth parameter{plural} {', '.join(missing)}",
                401,
            )
            auth.user = None
            return
        user = self._find_key(str(params["oauth_consumer_key"]))
        if user is None:
            auth.error = WpError(
                "woocommerce_rest_authentication_error", "Consumer key is invalid.", 401
            )
            auth.user = None
            return
        error = self._check_signature(req, user, params) or self._check_nonce(user, params)
        if error is not None:
            auth.error, auth.user = error, None
            return
        auth.user = user

    def _check_signature(
        self, req: _Request, user: ApiKey, params: dict[str, Any]
    ) -> WpError | None:
        request_path = req.raw_path
        wp_base = f"{self.home_path}/"
        if request_path.startswith(wp_base):
            request_path = request_path[len(wp_base) :]
        # get_home_url( null, $path, is_ssl() ? 'https' : 'http' ): home URL, not the Host header.
        base_url = f"{self.home_url}/{request_path.lstrip('/')}"
        provided = unquote(str(params["oauth_signature"]).replace(" ", "+"))
        signed = {k: v for k, v in params.items() if k != "oauth_signature"}
        method = signed["oauth_signature_method"]
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return WpError(
                "woocommerce_rest_authentication_error",
                "Invalid signature - signature method is invalid.",
                401,
            )
        expected = _wc_oauth_signature(req.method, base_url, signed, user.consumer_secret, method)
        if not hmac.compare_digest(expected, provided):
            return WpError(
                "woocommerce_rest_authentication_error",
                "Invalid signature - provided signature does not match.",
                401,
            )
        return None

    def _check_nonce(self, user: ApiKey, params: dict[str, Any]) -> WpError | None:
        now = self.clock.now()
        try:
            timestamp = int(float(str(params["oauth_timestamp"])))
        except ValueError:
            timestamp = -(10**12)
        if timestamp < now - NONCE_WINDOW or timestamp > now + NONCE_WINDOW:
            return WpError("woocommerce_rest_authentication_error", "Invalid timestamp.", 401)
        nonce = str(params["oauth_nonce"])
        if nonce in user.nonces.values():
            return WpError(
                "woocommerce_rest_authentication_error",
                "Invalid nonce - nonce has already been used.",
                401,
            )
        # WooCommerce keys stored nonces by timestamp: a second request in the same second
        # overwrites the first one's nonce (so that one could be replayed). Kept as is.
        user.nonces[timestamp] = nonce
        for ts in [t for t in user.nonces if t < now - NONCE_WINDOW]:
            del user.nonces[ts]
        return None

    @staticmethod
    def _check_key_permissions(user: ApiKey, method: str) -> None:
        if method in ("HEAD", "GET"):
            if user.permissions not in ("read", "read_write"):
                raise WpError(
                    "woocommerce_rest_authentication_error",
                    "The API key provided does not have read permissions.",
                    401,
                )
        elif method in ("POST", "PUT", "PATCH", "DELETE"):
            if user.permissions not in ("write", "read_write"):
                raise WpError(
                    "woocommerce_rest_authentication_error",
                    "The API key provided does not have write permissions.",
                    401,
                )
        elif method != "OPTIONS":
            raise WpError("woocommerce_rest_authentication_error", "Unknown request method.", 401)

    # -- dispatch ---------------------------------------------------------------------------

    def _match(self, route_path: str, method: str) -> tuple[_Route, dict[str, str], str, str]:
        if self.rest_enabled:
            for route in ROUTES:
                match = route.pattern.match(route_path)
                if match is None:
                    continue
                wanted = "GET" if method == "HEAD" else method
                if wanted in route.methods:
                    handler, perm = route.methods[wanted]
                    return route, match.groupdict(), handler, perm
        raise WpError(
            "rest_no_route", "No route was found matching the URL and request method.", 404
        )

    @staticmethod
    def _resource(route_path: str) -> str:
        parts = route_path.strip("/").split("/")[2:]
        names = [p for p in parts if not p.isdigit()]
        return names[-1] if names else ""

    def _check_permission(
        self, route: _Route, resource: str, match: dict[str, str], perm: str, auth: _Auth
    ) -> None:
        allowed = auth.user is not None and auth.user.capable
        if allowed:
            return
        # CRUD item checks look the object up first: a missing object passes, then 404s
        # (WC_REST_CRUD_Controller::get_item_permissions_check).
        crud = resource in ("orders", "products", "variations", "coupons", "refunds")
        if crud and "id" in match and int(match["id"]) not in self.store.records[resource]:
            return
        code, message = _PERMISSION_ERRORS[perm]
        # rest_authorization_required_code(): 401 when nobody is logged in, else 403.
        raise WpError(code, message, 403 if auth.user is not None else 401)

    async def _dispatch(
        self,
        resource: str,
        handler: str,
        req: _Request,
        match: dict[str, str],
        clean: dict[str, Any],
        params: dict[str, Any],
    ) -> tuple[int, Any, dict[str, str]]:
        if resource == "system_status":
            return 200, self._system_status(), {}
        if resource == "webhooks":
            return await self._webhooks(handler, match, clean, params, req)
        if handler == "list":
            return self._list(resource, req, match, clean)
        if handler == "create":
            raise WpError("fake_not_implemented", f"The fake does not create {resource}.", 501)
        record = self._record(resource, match)
        if handler == "edit":
            changes = {k: v for k, v in params.items() if k not in ("id", "_fields", "context")}
            self.store.update(resource, int(match["id"]), **changes)
        return 200, self._with_links(resource, record), {}

    def _record(self, resource: str, match: dict[str, str]) -> Record:
        record = self.store.records[resource].get(int(match["id"]))
        parent = match.get("parent")
        if record is None or (parent is not None and record.parent != int(parent)):
            code, message = _INVALID_ID[resource]
            raise WpError(code, message, 404)
        return record

    def _list(
        self, resource: str, req: _Request, match: dict[str, str], p: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        records = list(self.store.records[resource].values())
        if "parent" in match:
            records = [r for r in records if r.parent == int(match["parent"])]
        tests = self._predicates(resource, p)
        records = [r for r in records if all(test(r) for test in tests)]
        records = self._sort(resource, records, p)
        per_page, page = p["per_page"], p["page"]
        offset = p.get("offset") or (page - 1) * per_page
        total = len(records)
        pages = math.ceil(total / per_page)
        items = [self._with_links(resource, r) for r in records[offset : offset + per_page]]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        link = self._pagination_link(resource, req, match, page, pages)
        if link:
            headers["Link"] = link
        return 200, items, headers

    @staticmethod
    def _predicates(resource: str, p: dict[str, Any]) -> list[Callable[[Record], bool]]:
        """The query's filters, built once per request (a listing scans every record)."""
        tests: list[Callable[[Record], bool]] = []
        if p.get("include"):
            include = set(p["include"])
            tests.append(lambda r: r.obj["id"] in include)
        if p.get("exclude"):
            exclude = set(p["exclude"])
            tests.append(lambda r: r.obj["id"] not in exclude)
        if resource == "customers":
            role = p.get("role", "customer")
            if role != "all":
                tests.append(lambda r: r.obj["role"] == role)
            if "email" in p:
                email = p["email"].lower()
                tests.append(lambda r: r.obj["email"].lower() == email)
            if "search" in p:
                needle = p["search"].lower()
                fields = ("email", "username", "first_name", "last_name")
                tests.append(lambda r: needle in " ".join(r.obj[k] for k in fields).lower())
            return tests
        if resource == "orders":
            wanted = set(p.get("status", ["any"]))
            if "any" in wanted:
                hidden = {"trash", "auto-draft", "checkout-draft"}
                tests.append(lambda r: r.obj["status"] not in hidden)
            else:
                tests.append(lambda r: r.obj["status"] in wanted)
            if "customer" in p:
                customer = p["customer"]
                tests.append(lambda r: r.obj["customer_id"] == customer)
            if "product" in p:
                product = p["product"]
                tests.append(
                    lambda r: any(
                        product in (li["product_id"], li["variation_id"])
                        for li in r.obj["line_items"]
                    )
                )
            if "search" in p:
                needle = p["search"].lower()
                tests.append(lambda r: needle in json.dumps(r.obj["billing"]).lower())
        else:
            status = p.get("status", "any")
            if status == "any":
                tests.append(lambda r: r.obj.get("status") not in ("trash", "auto-draft"))
            else:
                tests.append(lambda r: r.obj.get("status") == status)
            if "type" in p:
                kind = p["type"]
                tests.append(lambda r: r.obj.get("type") == kind)
            if "sku" in p:
                skus = set(_php_list(p["sku"]))
                tests.append(lambda r: r.obj.get("sku") in skus)
            if "code" in p:
                code = p["code"].lower()
                tests.append(lambda r: r.obj.get("code") == code)
            if "search" in p:
                needle = p["search"].lower()
                tests.append(
                    lambda r: (
                        needle
                        in f"{r.obj.get('name', '')} {r.obj.get('code', '')} {r.obj.get('sku', '')}".lower()
                    )
                )
        # WP_Date_Query after/before: exclusive, one-second granularity. The site is UTC, so
        # dates_are_gmt picks a column with the same values.
        if "after" in p:
            after = p["after"]
            tests.append(lambda r: r.created > after)
        if "before" in p:
            before = p["before"]
            tests.append(lambda r: r.created < before)
        if "modified_after" in p:
            modified_after = p["modified_after"]
            tests.append(lambda r: r.modified > modified_after)
        if "modified_before" in p:
            modified_before = p["modified_before"]
            tests.append(lambda r: r.modified < modified_before)
        return tests

    def _sort(self, resource: str, records: list[Record], p: dict[str, Any]) -> list[Record]:
        orderby, reverse = p.get("orderby", "date"), p.get("order", "desc") == "desc"
        if orderby == "include" and p.get("include"):
            position = {oid: i for i, oid in enumerate(p["include"])}
            return sorted(records, key=lambda r: position.get(r.obj["id"], 0), reverse=reverse)
        keys: dict[str, Callable[[Record], Any]] = {
            "date": lambda r: (r.created, r.obj["id"]),
            "registered_date": lambda r: (r.created, r.obj["id"]),
            "modified": lambda r: (r.modified, r.obj["id"]),
            "title": lambda r: (
                str(r.obj.get("name") or r.obj.get("code") or r.obj["id"]),
                r.obj["id"],
            ),
            "slug": lambda r: (
                str(r.obj.get("slug") or r.obj.get("code") or r.obj["id"]),
                r.obj["id"],
            ),
            # WP_User_Query orderby name is display_name, which defaults to the login.
            "name": lambda r: (str(r.obj.get("username", "")), r.obj["id"]),
            "price": lambda r: (Decimal(r.obj.get("price") or "0"), r.obj["id"]),
        }
        key = keys.get(orderby, lambda r: r.obj["id"])
        return sorted(records, key=key, reverse=reverse)

    def _pagination_link(
        self, resource: str, req: _Request, match: dict[str, str], page: int, pages: int
    ) -> str:
        # add_query_arg( $request->get_query_params(), rest_url( … ) ), then page=prev/next.
        query: dict[str, Any] = {}
        for key, value in req.query_pairs:
            if key == "rest_route":
                continue
            name = key.partition("[")[0]
            query[name] = req.get.get(_php_var_name(name), value)
        if resource == "orders":
            # The orders controller writes its defaults back into the query params (recording 55).
            status = query.get("status", ["any"])
            query["status"] = _php_list(status)
            query.setdefault("dp", "2")
            query.setdefault("context", "view")
        base_path = "/" + "/".join(
            [NAMESPACE, *(p for p in self._rest_base(resource, match).split("/") if p)]
        )
        links = []
        for rel, target in (("prev", min(page - 1, pages)), ("next", page + 1)):
            if (rel == "prev" and page > 1) or (rel == "next" and pages > page):
                q = dict(query)
                q["page"] = str(target)
                sep = "&" if "?" in self.rest_root else "?"
                url = f"{self.rest_root}{base_path}{sep}{_build_query(q.items())}"
                links.append(f'<{url}>; rel="{rel}"')
        return ", ".join(links)

    @staticmethod
    def _rest_base(resource: str, match: dict[str, str]) -> str:
        if resource == "variations":
            return f"products/{match['parent']}/variations"
        if resource == "refunds":
            return f"orders/{match['parent']}/refunds"
        return resource

    def _with_links(self, resource: str, record: Record) -> dict[str, Any]:
        obj = dict(record.obj)
        oid = obj["id"]
        allow = {"allow": ["GET", "POST", "PUT", "PATCH", "DELETE"]}
        if resource == "variations":
            base = f"{REST_TOKEN}/{NAMESPACE}/products/{record.parent}"
            obj["_links"] = {
                "self": [{"href": f"{base}/variations/{oid}", "targetHints": allow}],
                "collection": [{"href": f"{base}/variations"}],
                "up": [{"href": base}],
            }
            return obj
        if resource == "refunds":
            base = f"{REST_TOKEN}/{NAMESPACE}/orders/{record.parent}"
            obj["_links"] = {
                "self": [
                    {"href": f"{base}/refunds/{oid}", "targetHints": {"allow": ["GET", "DELETE"]}}
                ],
                "collection": [{"href": f"{base}/refunds"}],
                "up": [{"href": base}],
            }
            return obj
        collection = f"{REST_TOKEN}/{NAMESPACE}/{resource}"
        links: dict[str, Any] = {
            "self": [{"href": f"{collection}/{oid}", "targetHints": allow}],
            "collection": [{"href": collection}],
        }
        if resource == "orders":
            links["email_templates"] = [
                {"embeddable": True, "href": f"{collection}/{oid}/actions/email_templates"}
            ]
            if obj.get("customer_id"):
                links["customer"] = [
                    {"href": f"{REST_TOKEN}/{NAMESPACE}/customers/{obj['customer_id']}"}
                ]
        obj["_links"] = links
        return obj

    def _system_status(self) -> dict[str, Any]:
        status = _clone(_SYSTEM_STATUS)
        status["security"]["secure_connection"] = self.is_ssl
        status["environment"]["wp_cron"] = self.wp_cron
        status["post_type_counts"] = [
            {"type": "product", "count": str(len(self.store.records["products"]))},
            {"type": "shop_coupon", "count": str(len(self.store.records["coupons"]))},
        ]
        return status

    async def _webhooks(
        self,
        handler: str,
        match: dict[str, str],
        clean: dict[str, Any],
        params: dict[str, Any],
        req: _Request,
    ) -> tuple[int, Any, dict[str, str]]:
        store = self.store
        if handler == "list":
            hooks = list(store.webhooks.values())
            if clean.get("status", "all") != "all":
                hooks = [h for h in hooks if h["status"] == clean["status"]]
            if clean.get("include"):
                hooks = [h for h in hooks if h["id"] in clean["include"]]
            hooks = [h for h in hooks if h["id"] not in clean.get("exclude", [])]
            desc = clean["order"] == "desc"
            if clean["orderby"] == "id":
                hooks.sort(key=lambda h: h["id"], reverse=desc)
            elif clean["orderby"] == "title":
                hooks.sort(key=lambda h: h["name"], reverse=desc)
            else:
                # ORDER BY date_created_gmt; rows of the same second keep id order (recording 24).
                hooks.sort(key=lambda h: h["id"])
                hooks.sort(key=lambda h: h["date_created_gmt"], reverse=desc)
            per_page, page = clean["per_page"], clean["page"]
            total, pages = len(hooks), math.ceil(len(hooks) / per_page)
            items = [self._webhook_out(h) for h in hooks[(page - 1) * per_page : page * per_page]]
            headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
            link = self._pagination_link("webhooks", req, match, page, pages)
            if link:
                headers["Link"] = link
            return 200, items, headers
        if handler == "create":
            topic = str(params.get("topic") or "")
            if not topic or not _valid_topic(topic.lower()):
                raise WpError(
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic is required and must be valid.",
                    400,
                )
            url = str(params.get("delivery_url") or "")
            if not re.match(r"^https?://[^\s/]+", url):
                raise WpError(
                    "woocommerce_rest_shop_webhook_invalid_delivery_url",
                    "Webhook delivery URL must be a valid URL starting with http:// or https://.",
                    400,
                )
            secret = (
                str(params.get("secret") or "") or f"generated-{store.rng.getrandbits(128):032x}"
            )
            status = str(params.get("status") or "active")
            name = str(params.get("name") or f"Webhook created on {_wc_date(self.clock.now())}")
            hook = store.add_webhook(name, topic, url, secret, status)
            if self.deliver_pings:
                await self._ping(hook)
            location = f"{self.rest_root}/{NAMESPACE}/webhooks/{hook['id']}"
            return 201, self._webhook_out(hook), {"Location": location}
        wid = int(match["id"])
        found = store.webhooks.get(wid)
        if found is None:
            code = "woocommerce_rest_shop_webhook_invalid_id"
            if handler == "edit":
                raise WpError(code, "ID is invalid.", 400)
            raise WpError(code, "Invalid ID.", 404)
        hook = found
        if handler == "edit":
            if params.get("topic"):
                if not _valid_topic(str(params["topic"]).lower()):
                    raise WpError(
                        "woocommerce_rest_shop_webhook_invalid_topic",
                        "Webhook topic must be valid.",
                        400,
                    )
                resource, _, event = str(params["topic"]).partition(".")
                hook.update(topic=params["topic"], resource=resource, event=event)
                hook["hooks"] = WEBHOOK_HOOKS.get(hook["topic"], hook["hooks"])
            if params.get("status"):
                if params["status"] not in ("active", "paused", "disabled"):
                    raise WpError(
                        "woocommerce_rest_shop_webhook_invalid_status",
                        "Webhook status must be valid.",
                        400,
                    )
                hook["status"] = params["status"]
            for key in ("name", "delivery_url"):
                if params.get(key):
                    hook[key] = params[key]
            if params.get("secret"):
                store.webhook_secrets[wid] = str(params["secret"])
            hook["date_modified"] = hook["date_modified_gmt"] = _wc_date(self.clock.now())
        elif handler == "delete":
            if not clean.get("force"):
                raise WpError(
                    "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.", 501
                )
            del store.webhooks[wid]
        return 200, self._webhook_out(hook), {}

    @staticmethod
    def _webhook_out(hook: dict[str, Any]) -> dict[str, Any]:
        out = dict(hook)
        base = f"{REST_TOKEN}/{NAMESPACE}/webhooks"
        out["_links"] = {
            "self": [
                {
                    "href": f"{base}/{hook['id']}",
                    "targetHints": {"allow": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                }
            ],
            "collection": [{"href": base}],
        }
        return out

    async def _ping(self, hook: dict[str, Any]) -> None:
        """``WC_Webhook::deliver_ping()``: inside the REST request, unsigned, 5 s timeout."""
        headers = {
            "User-Agent": f"WooCommerce/{WC_VERSION} Hookshot (WordPress/{WP_VERSION})",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    hook["delivery_url"],
                    data=f"webhook_id={hook['id']}",
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp,
            ):
                self.pings.append((hook["delivery_url"], resp.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.pings.append((hook["delivery_url"], type(exc).__name__))

    # -- rendering --------------------------------------------------------------------------

    def _render(self, data: Any) -> str:
        body = php_json(data)
        return body.replace(HOME_TOKEN, self.home_url.replace("/", "\\/")).replace(
            REST_TOKEN, self.rest_root.replace("/", "\\/")
        )

    def _base_headers(self, logged_in: bool) -> dict[str, str]:
        headers = {
            "X-Robots-Tag": "noindex",
            "Link": f'<{self.rest_root}/>; rel="https://api.w.org/"',
            "X-Content-Type-Options": "nosniff",
            "Access-Control-Expose-Headers": "X-WP-Total, X-WP-TotalPages, Link",
            "Access-Control-Allow-Headers": (
                "Authorization, X-WP-Nonce, Content-Disposition, Content-MD5, Content-Type"
            ),
        }
        if logged_in:
            # rest_send_nocache_headers() only for a logged-in user (recordings 15 vs 01).
            headers["Expires"] = "Wed, 11 Jan 1984 05:00:00 GMT"
            headers["Cache-Control"] = "no-cache, must-revalidate, max-age=0, no-store, private"
        else:
            headers["Vary"] = "Origin"
        return headers

    def _json(
        self, status: int, body: str, extra: Mapping[str, str], *, logged_in: bool = False
    ) -> web.Response:
        headers = self._base_headers(logged_in)
        headers.update(extra)  # a pagination Link replaces the api.w.org one, as in PHP
        return web.Response(
            status=status,
            body=body.encode(),
            headers=headers,
            content_type="application/json",
            charset="UTF-8",
        )

    def _error(
        self, error: WpError, auth: _Auth, extra: Mapping[str, str] | None = None
    ) -> web.Response:
        return self._json(
            error.status, php_json(error.body()), extra or {}, logged_in=auth.user is not None
        )

    @staticmethod
    def _html(status: int, page: str, extra: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=page.encode(),
            headers=dict(extra or {}),
            content_type="text/html",
            charset="UTF-8",
        )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _valid_topic(topic: str) -> bool:
    """``wc_is_webhook_valid_topic()`` as in 10.0.2 (any resource.event pair of the four)."""
    if topic.startswith("action."):
        hook = topic[len("action.") :]
        return hook.startswith(("woocommerce_", "wc_")) and hook not in (
            "woocommerce_login_credentials",
            "woocommerce_product_csv_importer_check_import_file_path",
            "woocommerce_webhook_should_deliver",
        )
    resource, _, event = topic.partition(".")
    return resource in ("coupon", "customer", "order", "product") and event in (
        "created",
        "updated",
        "deleted",
        "restored",
    )


# --------------------------------------------------------------------------------------------
# CLI for benchmarks.


def _write_port_file(path: str, port: int) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)  # atomic: a reader never sees a half-written file


async def _serve(args: argparse.Namespace) -> None:
    keys = None
    if args.consumer_key and args.consumer_secret:
        keys = [ApiKey(args.consumer_key, args.consumer_secret)]
    fake = WooFake(
        customers=args.customers,
        orders=args.orders,
        products=args.products,
        coupons=args.coupons,
        seed=args.seed,
        scheme=args.scheme,
        port=args.port,
        keys=keys,
        delay=args.delay,
        max_per_minute=args.max_per_minute,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        info = {
            "url": fake.url,
            "consumer_key": fake.consumer_key,
            "consumer_secret": fake.consumer_secret,
            "ca_file": fake.ca_file,
        }
        if args.port_file:
            _write_port_file(args.port_file, fake.port)
        print(json.dumps(info), flush=True)  # the line a parent process waits for
        await stop.wait()
        requests, sent = len(fake.requests), fake.bytes_sent
        statuses = dict(Counter(str(r.status) for r in fake.requests))
    summary = {"requests": requests, "bytes_sent": sent, "statuses": statuses}
    print(json.dumps(summary), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.fakes.woocommerce``: serve a generated store until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--coupons", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the listening port here once serving")
    parser.add_argument("--max-per-minute", type=int, default=None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--consumer-key", default=None)
    parser.add_argument("--consumer-secret", default=None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
