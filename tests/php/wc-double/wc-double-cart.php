<?php
/**
 * WooCommerce test double: the cart, the session and notices, as far as WooBrevo's cart capture
 * and restore link touch them (WC_Cart, WC_Session_Handler, wc_load_cart(), wc_add_notice(),
 * is_checkout(), wc_get_cart_url(), get_woocommerce_currency(), wc_get_price_decimals()).
 * Hooks fire where real WooCommerce fires them: calculate_totals() ends in
 * `woocommerce_cart_updated` (WC_Cart_Session::set_session() on `woocommerce_after_calculate_totals`),
 * empty_cart() fires only `woocommerce_cart_emptied`.
 *
 * @package WooBrevo\Tests
 */

defined( 'ABSPATH' ) || exit;

// phpcs:disable Generic.Files.OneObjectStructurePerFile

/** The session: a key/value store per visitor (guests get a random customer id). */
class WC_Session_Handler {
	/** @var array<string, mixed> */
	private $data = array();
	/** @var string */
	private $customer_id;
	/** @var bool */
	private $has_cookie = false;

	public function __construct() {
		$this->customer_id = 't_' . bin2hex( random_bytes( 15 ) );
	}

	public function get( $key, $default = null ) {
		return array_key_exists( (string) $key, $this->data ) ? maybe_unserialize( $this->data[ (string) $key ] ) : $default;
	}

	public function set( $key, $value ) {
		$this->data[ (string) $key ] = maybe_serialize( $value );
	}

	public function __unset( $key ) {
		unset( $this->data[ (string) $key ] );
	}

	public function get_customer_id() {
		return $this->customer_id;
	}

	public function has_session() {
		return $this->has_cookie || is_user_logged_in();
	}

	public function set_customer_session_cookie( $set ) {
		$this->has_cookie = (bool) $set;
	}
}

/** The cart: items keyed like WooCommerce's, coupons, totals (no tax, no shipping). */
class WC_Cart {
	/** @var array<string, array<string, mixed>> */
	public $cart_contents = array();
	/** @var string[] */
	public $applied_coupons = array();
	/** @var array<string, string> */
	private $totals = array();

	public function __construct() {
		$this->reset_totals();
	}

	private function reset_totals(): void {
		$this->totals = array(
			'subtotal'       => '0',
			'subtotal_tax'   => '0',
			'shipping_total' => '0',
			'shipping_tax'   => '0',
			'discount_total' => '0',
			'discount_tax'   => '0',
			'fee_total'      => '0',
			'fee_tax'        => '0',
			'total_tax'      => '0',
			'total'          => '0',
		);
	}

	public function get_cart() {
		return $this->cart_contents;
	}

	public function is_empty() {
		return 0 === count( $this->cart_contents );
	}

	/** WC_Cart::get_cart_hash(): md5 of the session form of the cart and the total; '' when empty. */
	public function get_cart_hash() {
		if ( ! $this->cart_contents ) {
			return '';
		}
		$session = array();
		foreach ( $this->cart_contents as $key => $item ) {
			unset( $item['data'] );
			$session[ $key ] = $item;
		}
		return md5( wp_json_encode( $session ) . $this->totals['total'] );
	}

	public function get_totals() {
		return $this->totals;
	}

	public function get_applied_coupons() {
		return $this->applied_coupons;
	}

	public function has_discount( $coupon_code = '' ) {
		return in_array( wc_format_coupon_code( $coupon_code ), $this->applied_coupons, true );
	}

	public function add_to_cart( $product_id = 0, $quantity = 1, $variation_id = 0, $variation = array(), $cart_item_data = array() ) {
		$product = wc_get_product( $variation_id ? $variation_id : $product_id );
		if ( ! $product || 'publish' !== $product->get_status() ) {
			wc_add_notice( 'Sorry, this product cannot be purchased.', 'error' );
			return false;
		}
		if ( ! $product->is_in_stock() ) {
			/* translators: %s: product name. */
			wc_add_notice( sprintf( 'You cannot add &quot;%s&quot; to the cart because the product is out of stock.', $product->get_name() ), 'error' );
			return false;
		}
		$key = md5( (int) $product_id . '_' . (int) $variation_id . '_' . wp_json_encode( $variation ) );
		if ( isset( $this->cart_contents[ $key ] ) ) {
			$this->cart_contents[ $key ]['quantity'] += (int) $quantity;
		} else {
			$this->cart_contents[ $key ] = array(
				'key'          => $key,
				'product_id'   => (int) $product_id,
				'variation_id' => (int) $variation_id,
				'variation'    => (array) $variation,
				'quantity'     => (int) $quantity,
				'data'         => $product,
			);
		}
		do_action( 'woocommerce_add_to_cart', $key, $product_id, $quantity, $variation_id, $variation, $cart_item_data );
		$this->calculate_totals();
		return $key;
	}

	public function set_quantity( $cart_item_key, $quantity = 1, $refresh_totals = true ) {
		if ( 0 === (int) $quantity ) {
			return $this->remove_cart_item( $cart_item_key );
		}
		$this->cart_contents[ $cart_item_key ]['quantity'] = (int) $quantity;
		if ( $refresh_totals ) {
			$this->calculate_totals();
		}
		return true;
	}

	public function remove_cart_item( $cart_item_key ) {
		if ( ! isset( $this->cart_contents[ $cart_item_key ] ) ) {
			return false;
		}
		do_action( 'woocommerce_remove_cart_item', $cart_item_key, $this );
		unset( $this->cart_contents[ $cart_item_key ] );
		do_action( 'woocommerce_cart_item_removed', $cart_item_key, $this );
		$this->calculate_totals();
		return true;
	}

	public function empty_cart( $clear_persistent_cart = true ) {
		$this->cart_contents   = array();
		$this->applied_coupons = array();
		$this->reset_totals();
		do_action( 'woocommerce_cart_emptied', $clear_persistent_cart );
	}

	public function apply_coupon( $coupon_code ) {
		$code   = wc_format_coupon_code( $coupon_code );
		$coupon = new WC_Coupon( $code );
		$expiry = $coupon->get_date_expires();
		if ( ! $coupon->get_id() || 'publish' !== $coupon->get_status() || ( $expiry && strtotime( (string) $expiry ) < time() ) ) {
			/* translators: %s: coupon code. */
			wc_add_notice( sprintf( 'Coupon "%s" cannot be applied because it does not exist.', $code ), 'error' );
			return false;
		}
		if ( $this->has_discount( $code ) ) {
			wc_add_notice( 'Coupon code already applied!', 'error' );
			return false;
		}
		$this->applied_coupons[] = $code;
		$this->calculate_totals();
		do_action( 'woocommerce_applied_coupon', $code );
		wc_add_notice( 'Coupon code applied successfully.' );
		return true;
	}

	public function remove_coupon( $coupon_code ) {
		$code                  = wc_format_coupon_code( $coupon_code );
		$this->applied_coupons = array_values( array_diff( $this->applied_coupons, array( $code ) ) );
		do_action( 'woocommerce_removed_coupon', $code );
		$this->calculate_totals();
		return true;
	}

	/** Totals from prices and coupons (percent or fixed_cart); then the session save fires cart_updated. */
	public function calculate_totals() {
		$subtotal = 0.0;
		foreach ( $this->cart_contents as $item ) {
			$subtotal += (float) $item['data']->get_price() * (int) $item['quantity'];
		}
		$discount = 0.0;
		foreach ( $this->applied_coupons as $code ) {
			$coupon    = new WC_Coupon( $code );
			$amount    = (float) $coupon->get_amount();
			$discount += 'percent' === $coupon->get_discount_type() ? $subtotal * $amount / 100 : $amount;
		}
		$discount                       = min( $discount, $subtotal );
		$this->totals['subtotal']       = (string) $subtotal;
		$this->totals['discount_total'] = (string) $discount;
		$this->totals['total']          = (string) ( $subtotal - $discount );
		do_action( 'woocommerce_after_calculate_totals', $this );
		do_action( 'woocommerce_cart_updated' );
	}
}

/** wc_load_cart(): the session and the cart of this request. */
function wc_load_cart() {
	$wc = WC();
	if ( null === $wc->session ) {
		$wc->session = new WC_Session_Handler();
	}
	if ( null === $wc->customer ) {
		$wc->customer = new WC_Customer( get_current_user_id() );
	}
	if ( null === $wc->cart ) {
		$wc->cart = new WC_Cart();
	}
}

/**
 * The block checkout's customer update, POST /wc/store/v1/cart/update-customer, as far as WooBrevo
 * reads it (Automattic\WooCommerce\StoreApi\Routes\V1\CartUpdateCustomer and AbstractCartRoute in
 * WooCommerce 10.0.2): the `Nonce` header checked against `wc_store_api` (unless
 * `woocommerce_store_api_disable_nonce_check`), the session customer's billing e-mail set from
 * `billing_address`, `woocommerce_store_api_cart_update_customer_from_request` fired with the customer
 * and the request, the totals recalculated, and the cart returned (items and billing address only).
 */
function wcd_register_store_api_routes(): void {
	register_rest_route(
		'wc/store/v1',
		'/cart/update-customer',
		array(
			'methods'             => WP_REST_Server::CREATABLE,
			'callback'            => 'wcd_store_api_update_customer',
			'permission_callback' => '__return_true',
			'args'                => array(
				'billing_address'  => array( 'type' => 'object' ),
				'shipping_address' => array( 'type' => 'object' ),
			),
		)
	);
}

/** The route's callback; errors shaped like the Store API's. */
function wcd_store_api_update_customer( WP_REST_Request $request ) {
	wc_load_cart();
	$nonce = $request->get_header( 'Nonce' );
	if ( ! apply_filters( 'woocommerce_store_api_disable_nonce_check', false ) ) {
		if ( null === $nonce ) {
			return new WP_Error( 'woocommerce_rest_missing_nonce', 'Missing the Nonce header. This endpoint requires a valid nonce.', array( 'status' => 401 ) );
		}
		if ( ! wp_verify_nonce( $nonce, 'wc_store_api' ) ) {
			return new WP_Error( 'woocommerce_rest_invalid_nonce', 'Nonce is invalid.', array( 'status' => 403 ) );
		}
	}
	$customer = WC()->customer;
	$billing  = (array) ( $request['billing_address'] ?? array() );
	if ( isset( $billing['email'] ) ) {
		$email = sanitize_email( (string) $billing['email'] );
		if ( '' === $email || ! is_email( $email ) ) {
			return new WP_Error( 'rest_invalid_param', 'Invalid parameter(s): billing_address', array( 'status' => 400 ) );
		}
		$customer->set_billing_email( $email );
	}
	do_action( 'woocommerce_store_api_cart_update_customer_from_request', $customer, $request );
	$customer->apply_changes(); // A session customer's save() keeps its props in the session, not in a user.
	WC()->cart->calculate_totals();
	$items = array();
	foreach ( WC()->cart->get_cart() as $key => $item ) {
		$items[] = array(
			'key'      => $key,
			'id'       => (int) ( $item['variation_id'] ? $item['variation_id'] : $item['product_id'] ),
			'quantity' => (int) $item['quantity'],
		);
	}
	return rest_ensure_response(
		array(
			'items'           => $items,
			'billing_address' => array( 'email' => $customer->get_billing_email() ),
		)
	);
}
add_action( 'rest_api_init', 'wcd_register_store_api_routes' );

/** Notices of this request, by type. */
function wc_add_notice( $message, $notice_type = 'success', $data = array() ) {
	$notices                   = (array) $GLOBALS['wcd_notices'];
	$notices[ $notice_type ][] = array(
		'notice' => $message,
		'data'   => $data,
	);
	$GLOBALS['wcd_notices']    = $notices;
}

function wc_get_notices( $notice_type = '' ) {
	$notices = (array) $GLOBALS['wcd_notices'];
	return '' === $notice_type ? $notices : ( $notices[ $notice_type ] ?? array() );
}

function wc_clear_notices() {
	$GLOBALS['wcd_notices'] = array();
}

$GLOBALS['wcd_notices'] = array();

function is_checkout() {
	return (bool) apply_filters( 'woocommerce_is_checkout', false );
}

function wc_get_cart_url() {
	return home_url( '/cart/' );
}

function wc_get_checkout_url() {
	return home_url( '/checkout/' );
}

function get_woocommerce_currency() {
	return (string) get_option( 'woocommerce_currency', 'USD' );
}

function wc_get_price_decimals() {
	return absint( get_option( 'woocommerce_price_num_decimals', 2 ) );
}
