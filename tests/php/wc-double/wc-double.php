<?php
/**
 * WooCommerce test double (loaded as a must-use plugin by tests/php/run.sh when no real
 * WooCommerce is given through WOOBREVO_WC_DIR). It provides only what WooBrevo touches:
 * WC_VERSION, WooCommerce/WC(), the CRUD classes and functions, FeaturesUtil, OrderUtil and the
 * wc/v3 REST routes for single objects and their collections (with WooCommerce's API keys:
 * wc-double-auth.php), shaped like real WooCommerce 10.0.2 responses (templates/),
 * the Store API's cart/update-customer route the block checkout posts the e-mail to, the
 * block checkout's additional fields API (wc-double-checkout-fields.php), and the top-level
 * WooCommerce admin menu.
 *
 * @package WooBrevo\Tests
 */

defined( 'ABSPATH' ) || exit;

if ( ! defined( 'WC_VERSION' ) ) {
	define( 'WC_VERSION', '10.0.2' );
}

require_once __DIR__ . '/wc-double-utilities.php';
require_once __DIR__ . '/wc-double-data.php';
require_once __DIR__ . '/wc-double-rest.php';
require_once __DIR__ . '/wc-double-auth.php';
require_once __DIR__ . '/wc-double-cart.php';
require_once __DIR__ . '/wc-double-checkout-fields.php';

// The blocks package loads on plugins_loaded, before init (WooCommerce's Bootstrap).
add_action(
	'plugins_loaded',
	static function () {
		do_action( 'woocommerce_blocks_loaded' );
	},
	10
);
require_once __DIR__ . '/wc-double-card.php';

/** The main class, as far as anything asks for it. */
final class WooCommerce {
	/** @var string */
	public $version = WC_VERSION;
	/** @var WC_Cart|null The cart, once wc_load_cart() ran. */
	public $cart = null;
	/** @var WC_Session_Handler|null */
	public $session = null;
	/** @var WC_Customer|null The session's customer, once wc_load_cart() ran. */
	public $customer = null;
	/** @var WooCommerce|null */
	private static $instance = null;

	public static function instance(): WooCommerce {
		if ( null === self::$instance ) {
			self::$instance = new self();
		}
		return self::$instance;
	}

	/** The payment gateway registry (wc-double-card.php). */
	public function payment_gateways(): WC_Payment_Gateways {
		return WC_Payment_Gateways::instance();
	}
}

function WC() { // phpcs:ignore -- WooCommerce's own name.
	return WooCommerce::instance();
}

/** Whether orders use HPOS (the double's default, like new WooCommerce installs). */
function wcd_hpos_enabled(): bool {
	return \Automattic\WooCommerce\Utilities\OrderUtil::custom_orders_table_usage_is_enabled();
}

function wc_get_order_statuses() {
	return array(
		'wc-pending'    => 'Pending payment',
		'wc-processing' => 'Processing',
		'wc-on-hold'    => 'On hold',
		'wc-completed'  => 'Completed',
		'wc-cancelled'  => 'Cancelled',
		'wc-refunded'   => 'Refunded',
		'wc-failed'     => 'Failed',
	);
}

function wc_get_is_paid_statuses() {
	return apply_filters( 'woocommerce_order_is_paid_statuses', array( 'processing', 'completed' ) );
}

function wc_format_decimal( $number, $dp = false, $trim_zeros = false ) {
	$number = (float) $number;
	return false === $dp ? (string) $number : number_format( $number, (int) $dp, '.', '' );
}

function wc_format_coupon_code( $value ) {
	return strtolower( trim( (string) $value ) );
}

/**
 * @return WC_Order|WC_Order_Refund|false
 */
function wc_get_order( $the_order = false ) {
	$id   = is_object( $the_order ) ? (int) $the_order->get_id() : (int) $the_order;
	$type = $id ? get_post_type( $id ) : false;
	if ( in_array( $type, array( 'shop_order', 'shop_order_placehold' ), true ) ) {
		return new WC_Order( $id );
	}
	if ( 'shop_order_refund' === $type ) {
		return new WC_Order_Refund( $id );
	}
	return false;
}

/**
 * wc_get_orders() for the arguments WooBrevo passes: `customer` (e-mails, matched against the
 * billing e-mail, or user ids; any of them), `limit` (-1: all), `return` (ids or objects). Orders only, newest first.
 *
 * @return int[]|WC_Order[]
 */
function wc_get_orders( $args = array() ) {
	$ids = get_posts(
		array(
			'post_type'   => wcd_hpos_enabled() ? 'shop_order_placehold' : 'shop_order',
			'post_status' => array_keys( wc_get_order_statuses() ),
			'fields'      => 'ids',
			'numberposts' => -1,
			'orderby'     => 'ID',
			'order'       => 'DESC',
		)
	);
	$out = array();
	foreach ( $ids as $id ) {
		$order   = new WC_Order( (int) $id );
		$wanted  = (array) ( $args['customer'] ?? array() );
		$matches = array() === $wanted;
		foreach ( $wanted as $customer ) {
			$matches = $matches || ( is_numeric( $customer ) ? (int) $order->get_customer_id() === (int) $customer : strtolower( (string) $order->get_billing_email() ) === strtolower( (string) $customer ) );
		}
		if ( ! $matches ) {
			continue;
		}
		$out[] = 'ids' === ( $args['return'] ?? 'objects' ) ? (int) $id : $order;
	}
	$limit = (int) ( $args['limit'] ?? 10 );
	return $limit > 0 ? array_slice( $out, 0, $limit ) : $out;
}

/**
 * @return WC_Product|false|null
 */
function wc_get_product( $the_product = false ) {
	$id   = is_object( $the_product ) ? (int) $the_product->get_id() : (int) $the_product;
	$post = $id ? get_post( $id ) : null;
	if ( ! $post ) {
		return false;
	}
	if ( 'product_variation' === $post->post_type ) {
		return new WC_Product_Variation( $id );
	}
	if ( 'product' !== $post->post_type ) {
		return null;
	}
	$data = get_post_meta( $id, '_wcd_data', true );
	return ! empty( $data['wcd_variable'] ) ? new WC_Product_Variable( $id ) : new WC_Product_Simple( $id );
}

function wc_create_order( $args = array() ) {
	$order = new WC_Order();
	if ( ! empty( $args['customer_id'] ) ) {
		$order->set_customer_id( absint( $args['customer_id'] ) );
	}
	if ( ! empty( $args['created_via'] ) ) {
		$order->set_created_via( $args['created_via'] );
	}
	if ( ! empty( $args['status'] ) ) {
		$order->set_status( $args['status'] );
	}
	$order->save();
	return $order;
}

/** wc_create_refund(): refund, then fully/partially refunded, refund_created, order_refunded. */
function wc_create_refund( $args = array() ) {
	$order = wc_get_order( $args['order_id'] ?? 0 );
	if ( ! $order ) {
		return new WP_Error( 'error', 'Invalid order ID.' );
	}
	$amount    = (float) ( $args['amount'] ?? 0 );
	$remaining = (float) $order->get_remaining_refund_amount();
	if ( $amount <= 0 || $amount > $remaining + 0.00001 ) {
		return new WP_Error( 'error', 'Invalid refund amount.' );
	}
	$refund = new WC_Order_Refund();
	$refund->set_parent_id( $order->get_id() );
	$refund->set_amount( wc_format_decimal( $amount, 2 ) );
	$refund->set_total( wc_format_decimal( -$amount, 2 ) );
	$refund->set_reason( (string) ( $args['reason'] ?? '' ) );
	$refund->set_status( 'completed' );
	$refund->save();
	if ( abs( $remaining - $amount ) < 0.00001 ) {
		do_action( 'woocommerce_order_fully_refunded', $order->get_id(), $refund->get_id() );
		$order->update_status( 'refunded' );
	} else {
		do_action( 'woocommerce_order_partially_refunded', $order->get_id(), $refund->get_id() );
	}
	do_action( 'woocommerce_refund_created', $refund->get_id(), $args );
	do_action( 'woocommerce_order_refunded', $order->get_id(), $refund->get_id() );
	return $refund;
}

/** wc_update_product_stock(): only for a product that manages its stock; saves it, then the stock hook. */
function wc_update_product_stock( $product, $stock_quantity = null, $operation = 'set' ) {
	$product = is_object( $product ) ? $product : wc_get_product( $product );
	if ( ! $product ) {
		return false;
	}
	if ( null === $stock_quantity || ! $product->get_manage_stock() ) {
		return $product->get_stock_quantity();
	}
	$current = (int) $product->get_stock_quantity();
	$new     = 'increase' === $operation ? $current + (int) $stock_quantity : ( 'decrease' === $operation ? $current - (int) $stock_quantity : (int) $stock_quantity );
	$product->set_stock_quantity( $new );
	$product->set_stock_status( $new > 0 ? 'instock' : 'outofstock' );
	$product->save();
	do_action( 'variation' === $product->get_type() ? 'woocommerce_variation_set_stock' : 'woocommerce_product_set_stock', $product );
	return $new;
}

/** wc_create_new_customer(): wp_insert_user, then woocommerce_created_customer. */
function wc_create_new_customer( $email, $username = '', $password = '', $args = array() ) {
	if ( empty( $email ) || ! is_email( $email ) ) {
		return new WP_Error( 'registration-error-invalid-email', 'Please provide a valid email address.' );
	}
	if ( email_exists( $email ) ) {
		return new WP_Error( 'registration-error-email-exists', 'An account is already registered with your email address.' );
	}
	$username           = '' !== $username ? sanitize_user( $username ) : sanitize_user( current( explode( '@', $email ) ), true );
	$password_generated = '' === $password;
	$new_customer_data  = array_merge(
		$args,
		array(
			'user_login' => $username,
			'user_pass'  => $password_generated ? wp_generate_password() : $password,
			'user_email' => $email,
			'role'       => 'customer',
		)
	);
	$customer_id        = wp_insert_user( wp_slash( $new_customer_data ) );
	if ( is_wp_error( $customer_id ) ) {
		return $customer_id;
	}
	do_action( 'woocommerce_created_customer', $customer_id, $new_customer_data, $password_generated );
	return $customer_id;
}

/** Order count (all statuses) or total spent (paid statuses), as WC_Customer_Data_Store computes them. */
function wcd_customer_orders( int $customer_id, bool $spent ) {
	global $wpdb;
	$statuses = $spent ? array_map( static fn( $s ) => 'wc-' . $s, wc_get_is_paid_statuses() ) : array_keys( wc_get_order_statuses() );
	$in       = implode( ',', array_fill( 0, count( $statuses ), '%s' ) );
	$select   = $spent ? 'SUM(total.meta_value)' : 'COUNT(*)';
	// phpcs:ignore -- test double; placeholders built above.
	$value = $wpdb->get_var( $wpdb->prepare( "SELECT {$select} FROM {$wpdb->posts} p JOIN {$wpdb->postmeta} c ON c.post_id = p.ID AND c.meta_key = '_customer_user' JOIN {$wpdb->postmeta} total ON total.post_id = p.ID AND total.meta_key = '_order_total' WHERE p.post_type IN ('shop_order','shop_order_placehold') AND c.meta_value = %d AND p.post_status IN ($in)", array_merge( array( $customer_id ), $statuses ) ) );
	return $spent ? wc_format_decimal( (float) $value, 2 ) : (int) $value;
}

function wc_get_customer_order_count( $user_id ) {
	return ( new WC_Customer( (int) $user_id ) )->get_order_count();
}

function wc_get_customer_total_spent( $user_id ) {
	return ( new WC_Customer( (int) $user_id ) )->get_total_spent();
}

/** Post types, roles and capabilities, installed once per site like WC_Install. */
function wcd_install(): void {
	if ( wp_installing() || get_option( 'woocommerce_version' ) === WC_VERSION ) {
		return;
	}
	add_role( 'customer', 'Customer', array( 'read' => true ) );
	add_role( 'shop_manager', 'Shop manager', array( 'read' => true, 'list_users' => true, 'edit_users' => true ) );
	$caps = array( 'manage_woocommerce', 'view_woocommerce_reports', 'read_private_shop_orders', 'edit_shop_orders', 'read_private_products', 'edit_products', 'read_private_shop_coupons', 'edit_shop_coupons' );
	foreach ( array( 'administrator', 'shop_manager' ) as $role_name ) {
		$role = get_role( $role_name );
		foreach ( $role ? $caps : array() as $cap ) {
			$role->add_cap( $cap );
		}
	}
	add_option( 'woocommerce_custom_orders_table_enabled', 'yes' );
	update_option( 'woocommerce_version', WC_VERSION );
}

add_action(
	'init',
	static function () {
		// WooCommerce::init() runs on init priority 0 and starts with before_woocommerce_init.
		do_action( 'before_woocommerce_init' );
		foreach ( array( 'product', 'product_variation', 'shop_coupon', 'shop_order', 'shop_order_refund', 'shop_order_placehold' ) as $type ) {
			register_post_type(
				$type,
				array(
					'public'   => false,
					'supports' => array(),
					'label'    => $type,
				)
			);
		}
		wcd_install();
		do_action( 'woocommerce_init' );
	},
	0
);

add_action(
	'wp_initialize_site',
	static function ( $site ) {
		switch_to_blog( (int) $site->blog_id );
		wcd_install();
		restore_current_blog();
	},
	50
);

// WooCommerce's top-level admin menu, which extensions (WooBrevo's settings screen) hang their pages under:
// slug `woocommerce`, added on admin_menu at priority 9 (WC_Admin_Menus::admin_menu()), its first entry Home.
add_action(
	'admin_menu',
	static function () {
		$page = static function () {
			echo '<div class="wrap"><h1>WooCommerce</h1><p>The WooCommerce test double has no screens of its own.</p></div>';
		};
		add_menu_page( 'WooCommerce', 'WooCommerce', 'manage_woocommerce', 'woocommerce', $page, 'dashicons-cart', '55.5' );
		add_submenu_page( 'woocommerce', 'Home', 'Home', 'manage_woocommerce', 'woocommerce', $page );
	},
	9
);

// wp_untrash_post() restores to draft since WordPress 5.6; WooCommerce restores its types' previous status.
add_filter(
	'wp_untrash_post_status',
	static function ( $new_status, $post_id, $previous_status ) {
		return in_array( get_post_type( $post_id ), array( 'product', 'product_variation', 'shop_coupon', 'shop_order' ), true ) ? $previous_status : $new_status;
	},
	10,
	3
);

add_action( 'rest_api_init', 'wcd_register_rest_routes' );
