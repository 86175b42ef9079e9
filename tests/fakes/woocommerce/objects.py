"""What the WooCommerce fake's objects are made of: the versions it reports, real 10.0.2
objects as templates, and the values it generates from them (money, price HTML, slugs, names,
order statuses, webhook topics and their hooks)."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

WC_VERSION: Final = "10.0.2"
WP_VERSION: Final = "6.8.8"
NAMESPACE: Final = "wc/v3"
HOME_TOKEN: Final = "__WC_HOME__"  # replaced by the home URL when a body is rendered
REST_TOKEN: Final = "__WC_REST__"  # replaced by the REST root (…/wp-json or …/?rest_route=)
RESOURCES: Final = ("customers", "orders", "products", "variations", "coupons", "refunds")

# Templates: real WooCommerce 10.0.2 objects from reference/woocommerce/real-10.0.2/rest/ (customer
# 28, order 59, products 40 and 42, variation 43, coupon 46, refund 52, webhook 24, system_status 17
# trimmed to the first entries of its long lists), `_links` removed: they are built per request.
# Kept as JSON text, exactly as WooCommerce sent it; generated objects are copies with new values.
CUSTOMER: Final[dict[str, Any]] = json.loads(
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
ORDER: Final[dict[str, Any]] = json.loads(
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
PRODUCT_SIMPLE: Final[dict[str, Any]] = json.loads(
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
PRODUCT_VARIABLE: Final[dict[str, Any]] = json.loads(
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
VARIATION: Final[dict[str, Any]] = json.loads(
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
COUPON: Final[dict[str, Any]] = json.loads(
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
REFUND: Final[dict[str, Any]] = json.loads(
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
WEBHOOK: Final[dict[str, Any]] = json.loads(
    '{"id":2,"name":"realwc order.updated","status":"active","topic":"order.updated","resourc'
    'e":"order","event":"updated","hooks":["woocommerce_update_order","woocommerce_order_refu'
    'nded"],"delivery_url":"http://127.0.0.1:9099/hook","date_created":"2026-11-27T05:18:12",'
    '"date_created_gmt":"2026-11-27T05:18:12","date_modified":"2026-11-27T05:18:12","date_mod'
    'ified_gmt":"2026-11-27T05:18:12"}'
)
SYSTEM_STATUS: Final[dict[str, Any]] = json.loads(
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
        CUSTOMER,
        ORDER,
        ORDER["line_items"][0],
        ORDER["coupon_lines"][0],
        ORDER["shipping_lines"][0],
        PRODUCT_SIMPLE,
        PRODUCT_VARIABLE,
        VARIATION,
        COUPON,
        REFUND,
        WEBHOOK,
        SYSTEM_STATUS,
    )
}


def clone(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of JSON data (the C encoder and decoder are ~10x faster than deepcopy)."""
    text = _TEMPLATE_TEXTS.get(id(value))
    copied: dict[str, Any] = json.loads(text if text is not None else json.dumps(value))
    return copied


def as_money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def as_plain(value: Decimal) -> str:
    # WooCommerce stores coupon discounts without trailing zeros ("3.6", "5").
    text = format(value.normalize(), "f")
    return text


def as_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _price_span(amount: str, hidden: bool = False) -> str:
    aria = ' aria-hidden="true"' if hidden else ""
    return (
        f'<span class="woocommerce-Price-amount amount"{aria}><bdi><span class="woocommerce-'
        f'Price-currencySymbol">&euro;</span>{amount}</bdi></span>'
    )


def price_html(regular: str, sale: str) -> str:
    if not sale:
        return _price_span(regular)
    return (
        f'<del aria-hidden="true">{_price_span(regular)}</del> <span class="screen-reader-text">'
        f'Original price was: &euro;{regular}.</span><ins aria-hidden="true">'
        f'{_price_span(sale)}</ins><span class="screen-reader-text">Current price is: '
        f"&euro;{sale}.</span>"
    )


def range_html(low: str, high: str) -> str:
    if low == high:
        return _price_span(low)
    return (
        f'{_price_span(low, True)} <span aria-hidden="true">&ndash;</span> '
        f'{_price_span(high, True)}<span class="screen-reader-text">Price range: &euro;{low} '
        f"through &euro;{high}</span>"
    )


def slugify(text: str) -> str:
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
