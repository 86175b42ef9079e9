<?php
/**
 * Store actions for the end-to-end tests, one WordPress request per process (as a shop has):
 *
 *   WOOBREVO_WP_DIR=… [WOOBREVO_WP_PATH=/shop2/] php wp_scenario.php COMMAND [ARGS…]
 *
 * configure URL TOKEN [CAFILE]     agent URL and site token of this site (the settings screen's options)
 * customer EMAIL FIRST LAST        a registered customer (WooCommerce's own creation path, then a profile update)
 * product NAME                     a variable product with two variations (Color: Red, Blue)
 * coupon CODE                      a percent coupon
 * order CUSTOMER_ID PRODUCT_ID VARIATION_ID COUPON   an order, created as pending
 * status ORDER_ID STATUS           one status transition (its own request, so it is its own event)
 * refund ORDER_ID AMOUNT           a partial refund
 * flush                            ship now: ends any backoff, then ticks until the outbox is empty
 * state                            outbox depth, epoch, blog id, last error, backoff
 *
 * A shopper's cart (VISITOR: `user:ID` for a logged-in customer, `guest:NAME` for a guest):
 *
 * cart-add VISITOR PRODUCT_ID VARIATION_ID QTY   adds to the cart
 * cart-email VISITOR EMAIL classic|block         a guest types the e-mail at checkout (the classic
 *                                                checkout's endpoint, or the Store API's customer update)
 * cart-empty VISITOR                             empties the cart
 * checkout VISITOR classic|block [--subscribe]   places the order from the cart, then the cart empties;
 *                                                the opt-in box as the shopper sees it, ticked with --subscribe
 * restore-link URL                               the cart a restore link names (null: refused)
 *
 * Each cart command prints `cart_id` and `topics` (the cart rows this request wrote to the
 * outbox) and `snapshot` (what they ship). The visitor's browser lives between processes in an
 * option: its WooCommerce session keys, session id and cart, loaded at the start of the request
 * as WooCommerce loads a cart from its session (so an unchanged cart writes nothing).
 *
 * The opt-in (a form shows the box only as the plugin renders it; the command posts what the
 * form holds, ticked or not, with the form's nonce):
 *
 * optin-settings on|off [TEXT]      the box on every form (checkout, registration, My Account), its text
 * register EMAIL [--subscribe]      the My Account registration form
 * account-optin USER_ID on|off      My Account → Account details saved with the box ticked or not
 *
 * Each prints `shown` (the form had the box) and `record` (the consent record afterwards).
 *
 * Personal data, through WordPress's own tools (a request confirmed by the admin, then what
 * Tools → Erase / Export Personal Data runs: the admin-ajax handler, per eraser or exporter and page):
 *
 * erase EMAIL                      every eraser; prints `responses` (per eraser), `status` (the
 *                                  request's, request-completed at the end) and `topics` (the outbox)
 * export EMAIL                     every exporter; prints `data` (the export items)
 * pay ORDER_ID                     pays the order through the double's card gateway `wcd_card`
 *
 * Prints one JSON object. Each process ends with WordPress's `shutdown`, where the plugin's own
 * shipper runs as it does after a real request (CLI: no response to wait for).
 *
 * @package WooBrevo
 */

require dirname( __DIR__ ) . '/php/wp-env/load.php';

$woobrevo_args = array_slice( $argv, 1 );
$woobrevo_cmd  = (string) array_shift( $woobrevo_args );
wp_set_current_user( 1 );

/**
 * Prints the result.
 *
 * @param array $data Result.
 */
function woobrevo_e2e_out( array $data ): void {
	echo wp_json_encode( $data ), "\n";
}

/**
 * The option that keeps a visitor's browser between requests.
 *
 * @param string $visitor user:ID or guest:NAME.
 * @return string
 */
function woobrevo_e2e_visitor_option( string $visitor ): string {
	return 'e2e_visitor_' . md5( $visitor ); // Not woobrevo_: the plugin's uninstall owns those.
}

/**
 * Starts a shopper's request: the user (or none), WooCommerce's session and cart, and what the
 * visitor's previous requests left in them.
 *
 * @param string $visitor user:ID or guest:NAME.
 * @return void
 */
function woobrevo_e2e_visitor_load( string $visitor ): void {
	list( $kind, $name ) = array_pad( explode( ':', $visitor, 2 ), 2, '' );
	if ( ! in_array( $kind, array( 'user', 'guest' ), true ) || '' === $name ) {
		fwrite( STDERR, "a visitor is user:ID or guest:NAME, not $visitor\n" );
		exit( 2 );
	}
	wp_set_current_user( 'user' === $kind ? (int) $name : 0 );
	if ( null === WC()->cart || null === WC()->session ) {
		wc_load_cart();
	}
	$saved = get_option( woobrevo_e2e_visitor_option( $visitor ) );
	if ( ! is_array( $saved ) ) {
		return;
	}
	$session = WC()->session;
	foreach ( array( 'customer_id', '_customer_id' ) as $property ) { // The double's, WooCommerce's.
		if ( property_exists( $session, $property ) ) {
			$ref = new ReflectionProperty( $session, $property );
			$ref->setAccessible( true );
			$ref->setValue( $session, $saved['customer_id'] );
		}
	}
	foreach ( (array) $saved['session'] as $key => $value ) {
		$session->set( $key, $value );
	}
	$cart = WC()->cart;
	if ( ! $cart->is_empty() || ! $saved['items'] ) {
		return; // WooCommerce loaded it already (a logged-in shopper's persistent cart), or none.
	}
	$contents = array();
	foreach ( (array) $saved['items'] as $key => $item ) {
		$item['data']     = wc_get_product( $item['variation_id'] ? $item['variation_id'] : $item['product_id'] );
		$contents[ $key ] = $item;
	}
	if ( method_exists( $cart, 'set_cart_contents' ) ) {
		$cart->set_cart_contents( $contents );
		$cart->set_applied_coupons( (array) $saved['coupons'] );
	} else {
		$cart->cart_contents   = $contents;
		$cart->applied_coupons = (array) $saved['coupons'];
	}
	// As on every page view: totals, then `woocommerce_cart_updated` over an unchanged cart.
	$cart->calculate_totals();
}

/**
 * Ends a shopper's request: keeps the session and cart for the visitor's next one, and prints
 * the cart rows this request wrote.
 *
 * @param string $visitor user:ID or guest:NAME.
 * @param int    $after   The outbox's last row id before the request's action.
 * @param array  $extra   More to print.
 * @return void
 */
function woobrevo_e2e_visitor_save( string $visitor, int $after, array $extra = array() ): void {
	global $wpdb;
	$cart  = WC()->cart;
	$items = array();
	foreach ( (array) $cart->get_cart() as $key => $item ) {
		unset( $item['data'] );
		$items[ $key ] = $item;
	}
	$session = WC()->session;
	update_option(
		woobrevo_e2e_visitor_option( $visitor ),
		array(
			'customer_id' => (string) $session->get_customer_id(),
			'session'     => array(
				WooBrevo_Carts::SESSION_STATE => $session->get( WooBrevo_Carts::SESSION_STATE ),
				WooBrevo_Carts::SESSION_EMAIL => $session->get( WooBrevo_Carts::SESSION_EMAIL ),
			),
			'items'       => $items,
			'coupons'     => array_values( (array) $cart->get_applied_coupons() ),
		),
		false
	);
	$table = ( new WooBrevo_Outbox() )->table();
	$rows  = $wpdb->get_results( $wpdb->prepare( "SELECT resource_id, topic FROM {$table} WHERE resource = 'cart' AND id > %d ORDER BY id", $after ), ARRAY_A ); // phpcs:ignore -- the table name is ours.
	$id    = $rows ? (int) end( $rows )['resource_id'] : 0;
	woobrevo_e2e_out(
		array_merge(
			array(
				'cart_id'  => $id,
				'topics'   => array_column( $rows, 'topic' ),
				'snapshot' => $id ? WooBrevo_Carts::stored_snapshot( $id ) : null,
			),
			$extra
		)
	);
}

/**
 * The outbox's last row id.
 *
 * @return int
 */
function woobrevo_e2e_last_row(): int {
	global $wpdb;
	$table = ( new WooBrevo_Outbox() )->table();
	return (int) $wpdb->get_var( "SELECT COALESCE(MAX(id), 0) FROM {$table}" ); // phpcs:ignore -- the table name is ours.
}

/**
 * Renders a form's part (an action) as the shopper's page would, and posts what it holds: the
 * form's nonce, our hidden field and the box (ticked or not) when the plugin showed it.
 *
 * @param string $hook         The action that renders into the form.
 * @param string $nonce_field  The form's nonce field.
 * @param string $nonce_action Its action.
 * @param bool   $tick         Whether the shopper ticks the box.
 * @return bool Whether the form had the box.
 */
function woobrevo_e2e_post_form( string $hook, string $nonce_field, string $nonce_action, bool $tick ): bool {
	ob_start();
	do_action( $hook );
	$html  = (string) ob_get_clean();
	$shown = (bool) preg_match( '/name="' . WooBrevo_Consent::FIELD_SHOWN . '" value="([a-z_]+)"/', $html, $m );
	$_POST = array( $nonce_field => wp_create_nonce( $nonce_action ) );
	if ( $shown ) {
		$_POST[ WooBrevo_Consent::FIELD_SHOWN ] = $m[1];
		if ( $tick ) {
			$_POST[ WooBrevo_Consent::FIELD ] = '1';
		}
	}
	return $shown;
}

/**
 * The block checkout's opt-in field for this shopper: registered on `woocommerce_init` as
 * WooCommerce's request for this user would have it (this process began as no one).
 *
 * @return object|null WooCommerce's CheckoutFields with the field, or null when it is not offered.
 */
function woobrevo_e2e_block_field() {
	if ( ! WooBrevo_Consent::block_checkout_supported() ) {
		return null;
	}
	$fields = Automattic\WooCommerce\Blocks\Package::container()->get( Automattic\WooCommerce\Blocks\Domain\Services\CheckoutFields::class );
	$fields->deregister_checkout_field( WooBrevo_Consent::BLOCK_FIELD );
	WooBrevo_Consent::reset_request();
	return ( new WooBrevo_Consent() )->action_woocommerce_init() ? $fields : null;
}

/**
 * Places the order of the visitor's cart as a checkout does: the order from the cart's lines,
 * the opt-in as the shopper left it (classic: posted with the checkout, on the order before its
 * save; block: the additional field persisted as the Store API does), the checkout's "order
 * processed" action, the payment, then the emptied cart.
 *
 * @param string $checkout  classic or block.
 * @param bool   $subscribe Whether the shopper ticks the opt-in box (when there is one).
 * @return array{0: WC_Order, 1: bool} The order, and whether the checkout had the box.
 */
function woobrevo_e2e_checkout( string $checkout, bool $subscribe = false ): array {
	$user_id = get_current_user_id();
	$email   = $user_id ? wp_get_current_user()->user_email : (string) WC()->session->get( WooBrevo_Carts::SESSION_EMAIL );
	$order   = wc_create_order( array( 'customer_id' => $user_id ) );
	foreach ( WC()->cart->get_cart() as $item ) {
		$order->add_product( $item['data'], (int) $item['quantity'] );
	}
	$order->set_billing_email( $email );
	$order->set_billing_first_name( 'Sam' );
	$order->set_billing_last_name( 'Shopper' );
	$order->set_billing_city( 'Lyon' );
	$order->set_billing_country( 'FR' );
	$order->calculate_totals();
	$order->set_status( 'pending' );
	$shown = false;
	if ( 'block' === $checkout ) {
		$fields = woobrevo_e2e_block_field();
		$shown  = null !== $fields;
		if ( $shown ) {
			$fields->persist_field_for_order( WooBrevo_Consent::BLOCK_FIELD, $subscribe, $order, 'other', false );
		}
	} else {
		$shown = woobrevo_e2e_post_form( 'woocommerce_review_order_before_submit', 'woocommerce-process-checkout-nonce', 'woocommerce-process_checkout', $subscribe );
		do_action( 'woocommerce_checkout_process' ); // WC_Checkout::process_checkout(), once its nonce is checked.
		do_action( 'woocommerce_checkout_create_order', $order, array() );
		$_POST = array();
	}
	$order->save();
	if ( 'block' === $checkout ) {
		do_action( 'woocommerce_store_api_checkout_order_processed', $order );
	} else {
		do_action( 'woocommerce_checkout_order_processed', $order->get_id(), array(), $order );
	}
	$order->update_status( 'processing' );
	WC()->cart->empty_cart();
	return array( $order, $shown );
}

/** Ends an admin-ajax handler's wp_send_json() without ending the process. */
final class WooBrevo_E2E_Ajax_Done extends Exception {
}

/**
 * Runs an admin-ajax handler as wp-admin's privacy tools call it and returns its JSON answer.
 *
 * @param callable $handler The wp_ajax_* function.
 * @param array    $post    The POST fields.
 * @return array
 */
function woobrevo_e2e_ajax( callable $handler, array $post ): array {
	$_POST    = $post;
	$_REQUEST = $post;
	$die      = static function () {
		return static function () {
			throw new WooBrevo_E2E_Ajax_Done();
		};
	};
	add_filter( 'wp_doing_ajax', '__return_true' );
	add_filter( 'wp_die_ajax_handler', $die );
	ob_start();
	try {
		$handler();
	} catch ( WooBrevo_E2E_Ajax_Done $e ) { // phpcs:ignore Generic.CodeAnalysis.EmptyStatement.DetectedCatch -- wp_send_json() ended the handler.
	} finally {
		$out = (string) ob_get_clean();
		remove_filter( 'wp_doing_ajax', '__return_true' );
		remove_filter( 'wp_die_ajax_handler', $die );
		$_POST    = array();
		$_REQUEST = array();
	}
	$answer = json_decode( $out, true );
	if ( ! is_array( $answer ) || empty( $answer['success'] ) ) {
		fwrite( STDERR, "admin-ajax answered: $out\n" );
		exit( 1 );
	}
	return (array) $answer['data'];
}

/**
 * A personal-data request the admin confirmed, then every eraser (or exporter) page by page, as
 * wp-admin's privacy screens run them.
 *
 * @param string $email  The person's e-mail.
 * @param string $action remove_personal_data or export_personal_data.
 * @return array{0: int, 1: array} The request id and the answers, per tool key.
 */
function woobrevo_e2e_privacy_request( string $email, string $action ): array {
	require_once ABSPATH . 'wp-admin/includes/ajax-actions.php';
	require_once ABSPATH . 'wp-admin/includes/privacy-tools.php';
	// wp-admin/includes/admin-filters.php: a request is completed after its last eraser's last page.
	add_filter( 'wp_privacy_personal_data_erasure_page', 'wp_privacy_process_personal_data_erasure_page', 10, 5 );
	$request_id = wp_create_user_request( $email, $action, array(), 'confirmed' );
	if ( is_wp_error( $request_id ) ) {
		fwrite( STDERR, $request_id->get_error_message() . "\n" );
		exit( 1 );
	}
	$erase   = 'remove_personal_data' === $action;
	$tools   = $erase ? apply_filters( 'wp_privacy_personal_data_erasers', array() ) : apply_filters( 'wp_privacy_personal_data_exporters', array() );
	$answers = array();
	foreach ( array_keys( $tools ) as $index => $key ) {
		for ( $page = 1; $page <= 50; $page++ ) {
			$answer = woobrevo_e2e_ajax(
				$erase ? 'wp_ajax_wp_privacy_erase_personal_data' : 'wp_ajax_wp_privacy_export_personal_data',
				array(
					'id'                         => $request_id,
					'security'                   => wp_create_nonce( ( $erase ? 'wp-privacy-erase-personal-data-' : 'wp-privacy-export-personal-data-' ) . $request_id ),
					$erase ? 'eraser' : 'exporter' => $index + 1,
					'page'                       => $page,
				)
			);
			$answers[ $key ][] = $answer;
			if ( ! empty( $answer['done'] ) ) {
				break;
			}
		}
	}
	if ( ! $erase ) {
		// wp_privacy_process_personal_data_export_page() completes it once the file is sent; no file here.
		_wp_privacy_completed_request( (int) $request_id );
	}
	return array( (int) $request_id, $answers );
}

switch ( $woobrevo_cmd ) {
	case 'configure':
		WooBrevo_Settings::set( 'agent_url', $woobrevo_args[0] );
		WooBrevo_Settings::set( 'token', $woobrevo_args[1] );
		WooBrevo_Settings::set( 'ca_file', $woobrevo_args[2] ?? '' );
		WooBrevo_Settings::set( 'payload_user', 1 );
		delete_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION );
		delete_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION );
		woobrevo_e2e_out( array( 'blog_id' => get_current_blog_id() ) );
		break;

	case 'customer':
		list( $email, $first, $last ) = $woobrevo_args;
		$id                           = wc_create_new_customer( $email, sanitize_user( strstr( $email, '@', true ) ), 'pw-' . wp_generate_password( 12, false ) );
		if ( is_wp_error( $id ) ) {
			fwrite( STDERR, $id->get_error_message() . "\n" );
			exit( 1 );
		}
		$customer = new WC_Customer( $id );
		$customer->set_first_name( $first );
		$customer->set_last_name( $last );
		$customer->set_billing_first_name( $first );
		$customer->set_billing_last_name( $last );
		$customer->set_billing_email( $email );
		$customer->set_billing_city( 'Lyon' );
		$customer->set_billing_country( 'FR' );
		$customer->set_billing_phone( '+33 6 12 34 56 78' );
		$customer->save();
		woobrevo_e2e_out( array( 'customer_id' => (int) $id ) );
		break;

	case 'product':
		$product = new WC_Product_Variable();
		$product->set_name( $woobrevo_args[0] );
		$product->set_sku( 'E2E-' . strtoupper( wp_generate_password( 6, false ) ) );
		$product->set_regular_price( '20.00' );
		$parent     = $product->save();
		$variations = array();
		foreach ( array( 'Red' => '20.00', 'Blue' => '22.00' ) as $color => $price ) {
			$variation = new WC_Product_Variation();
			$variation->set_parent_id( $parent );
			$variation->set_name( $woobrevo_args[0] . ' - ' . $color );
			$variation->set_regular_price( $price );
			$variation->set_sku( 'E2E-' . strtoupper( wp_generate_password( 6, false ) ) );
			$variations[] = $variation->save();
		}
		woobrevo_e2e_out(
			array(
				'product_id'    => (int) $parent,
				'variation_ids' => array_map( 'intval', $variations ),
			)
		);
		break;

	case 'coupon':
		$coupon = new WC_Coupon();
		$coupon->set_code( $woobrevo_args[0] );
		$coupon->set_discount_type( 'percent' );
		$coupon->set_amount( '10' );
		woobrevo_e2e_out( array( 'coupon_id' => (int) $coupon->save() ) );
		break;

	case 'order':
		list( $customer_id, $product_id, $variation_id, $code ) = $woobrevo_args;
		$customer = new WC_Customer( (int) $customer_id );
		$order    = wc_create_order( array( 'customer_id' => (int) $customer_id ) );
		$order->add_product( wc_get_product( (int) $variation_id ), 2 );
		$order->set_billing_first_name( $customer->get_first_name() );
		$order->set_billing_last_name( $customer->get_last_name() );
		$order->set_billing_email( $customer->get_email() );
		$order->set_billing_city( 'Lyon' );
		$order->set_billing_country( 'FR' );
		if ( method_exists( $order, 'apply_coupon' ) && '' !== $code ) {
			$order->apply_coupon( $code );
		}
		$order->calculate_totals();
		$order->set_status( 'pending' );
		$order->save();
		woobrevo_e2e_out(
			array(
				'order_id' => (int) $order->get_id(),
				'total'    => (string) $order->get_total(),
			)
		);
		break;

	case 'status':
		$order = wc_get_order( (int) $woobrevo_args[0] );
		$order->update_status( $woobrevo_args[1] );
		woobrevo_e2e_out( array( 'status' => $order->get_status() ) );
		break;

	case 'refund':
		$refund = wc_create_refund(
			array(
				'order_id' => (int) $woobrevo_args[0],
				'amount'   => $woobrevo_args[1],
				'reason'   => 'e2e',
			)
		);
		if ( is_wp_error( $refund ) ) {
			fwrite( STDERR, $refund->get_error_message() . "\n" );
			exit( 1 );
		}
		woobrevo_e2e_out( array( 'refund_id' => (int) $refund->get_id() ) );
		break;

	case 'cart-add':
		list( $visitor, $product_id, $variation_id, $qty ) = $woobrevo_args;
		woobrevo_e2e_visitor_load( $visitor );
		$after = woobrevo_e2e_last_row();
		if ( false === WC()->cart->add_to_cart( (int) $product_id, (int) $qty, (int) $variation_id ) ) {
			fwrite( STDERR, wp_json_encode( wc_get_notices() ) . "\n" );
			exit( 1 );
		}
		woobrevo_e2e_visitor_save( $visitor, $after );
		break;

	case 'cart-email':
		list( $visitor, $email, $checkout ) = $woobrevo_args;
		woobrevo_e2e_visitor_load( $visitor );
		$after = woobrevo_e2e_last_row();
		if ( 'block' === $checkout ) {
			$customer = new WC_Customer();
			$customer->set_billing_email( $email );
			$request = new WP_REST_Request( 'PUT', '/wc/store/v1/checkout' );
			$request->set_param( 'billing_address', array( 'email' => $email ) );
			do_action( 'woocommerce_store_api_cart_update_customer_from_request', $customer, $request );
			$captured = true;
		} else {
			$request = new WP_REST_Request( 'POST', '/' . WooBrevo_Carts::REST_NAMESPACE . WooBrevo_Carts::REST_ROUTE );
			$request->set_body_params(
				array(
					'email' => $email,
					'nonce' => wp_create_nonce( WooBrevo_Carts::NONCE_ACTION ),
				)
			);
			$response = rest_do_request( $request );
			$captured = 200 === $response->get_status() ? $response->get_data()['captured'] : $response->get_data();
		}
		woobrevo_e2e_visitor_save( $visitor, $after, array( 'captured' => $captured ) );
		break;

	case 'cart-empty':
		woobrevo_e2e_visitor_load( $woobrevo_args[0] );
		$after = woobrevo_e2e_last_row();
		WC()->cart->empty_cart();
		woobrevo_e2e_visitor_save( $woobrevo_args[0], $after );
		break;

	case 'checkout':
		list( $visitor, $checkout ) = $woobrevo_args;
		woobrevo_e2e_visitor_load( $visitor );
		$after                 = woobrevo_e2e_last_row();
		list( $order, $shown ) = woobrevo_e2e_checkout( $checkout, in_array( '--subscribe', $woobrevo_args, true ) );
		$record                = wc_get_order( $order->get_id() )->get_meta( WooBrevo_Consent::META_KEY, true );
		woobrevo_e2e_visitor_save(
			$visitor,
			$after,
			array(
				'order_id' => (int) $order->get_id(),
				'total'    => (string) $order->get_total(),
				'shown'    => $shown,
				'record'   => is_array( $record ) ? $record : null,
			)
		);
		break;

	case 'optin-settings':
		WooBrevo_Settings::set( 'optin_enabled', 'on' === $woobrevo_args[0] ? '1' : '0' );
		WooBrevo_Settings::set( 'optin_label', $woobrevo_args[1] ?? '' );
		WooBrevo_Settings::set( 'optin_forms', WooBrevo_Consent::FORMS );
		woobrevo_e2e_out(
			array(
				'enabled' => WooBrevo_Settings::get( 'optin_enabled' ),
				'label'   => WooBrevo_Consent::label(),
				'mode'    => WooBrevo_Consent::agent_mode(),
				'block'   => WooBrevo_Consent::block_checkout_supported(),
			)
		);
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	case 'register':
		$email = $woobrevo_args[0];
		wp_set_current_user( 0 );
		$shown = woobrevo_e2e_post_form( 'woocommerce_register_form', 'woocommerce-register-nonce', 'woocommerce-register', in_array( '--subscribe', $woobrevo_args, true ) );
		$id    = wc_create_new_customer( $email, sanitize_user( strstr( $email, '@', true ) ), 'pw-' . wp_generate_password( 12, false ) );
		$_POST = array();
		if ( is_wp_error( $id ) ) {
			fwrite( STDERR, $id->get_error_message() . "\n" );
			exit( 1 );
		}
		woobrevo_e2e_out(
			array(
				'customer_id' => (int) $id,
				'shown'       => $shown,
				'record'      => WooBrevo_Consent::of_user( (int) $id ),
			)
		);
		break;

	case 'account-optin':
		$id = (int) $woobrevo_args[0];
		wp_set_current_user( $id );
		$shown = woobrevo_e2e_post_form( 'woocommerce_edit_account_form', 'save-account-details-nonce', 'save_account_details', 'on' === $woobrevo_args[1] );
		// WC_Form_Handler::save_account_details(): the customer saved, then the action.
		( new WC_Customer( $id ) )->save();
		do_action( 'woocommerce_save_account_details', $id );
		$_POST = array();
		woobrevo_e2e_out(
			array(
				'customer_id' => $id,
				'shown'       => $shown,
				'record'      => WooBrevo_Consent::of_user( $id ),
			)
		);
		break;

	case 'restore-link':
		parse_str( (string) wp_parse_url( $woobrevo_args[0], PHP_URL_QUERY ), $query );
		$token = (string) ( $query[ WooBrevo_Carts::QUERY_ARG ] ?? '' );
		woobrevo_e2e_out( array( 'cart_id' => WooBrevo_Carts::verify( $token, WooBrevo_Carts::secret(), time() ) ) );
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	case 'erase':
		$after                     = woobrevo_e2e_last_row();
		list( $request, $answers ) = woobrevo_e2e_privacy_request( $woobrevo_args[0], 'remove_personal_data' );
		global $wpdb;
		$table = ( new WooBrevo_Outbox() )->table();
		woobrevo_e2e_out(
			array(
				'request'   => $request,
				'status'    => get_post_status( $request ),
				'responses' => $answers,
				'topics'    => $wpdb->get_results( $wpdb->prepare( "SELECT topic, resource_id FROM {$table} WHERE id > %d ORDER BY id", $after ), ARRAY_A ), // phpcs:ignore -- the table name is ours.
			)
		);
		break;

	case 'export':
		list( $request, $answers ) = woobrevo_e2e_privacy_request( $woobrevo_args[0], 'export_personal_data' );
		$data                      = array();
		foreach ( $answers as $pages ) {
			foreach ( $pages as $answer ) {
				$data = array_merge( $data, (array) ( $answer['data'] ?? array() ) );
			}
		}
		woobrevo_e2e_out( array( 'data' => $data ) );
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	case 'pay':
		require_once dirname( __DIR__ ) . '/php/wc-double/wc-double-card.php'; // Loaded by the double; a real WooCommerce needs it here.
		$paid  = ( new WCD_Gateway_Card() )->process_payment( (int) $woobrevo_args[0] );
		$order = wc_get_order( (int) $woobrevo_args[0] );
		woobrevo_e2e_out(
			array(
				'result'         => $paid['result'],
				'status'         => $order->get_status(),
				'transaction_id' => $paid['transaction_id'],
			)
		);
		break;

	case 'flush':
		// An operator's "ship now": the backoff is for unattended ticks.
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 0 );
		$outbox  = new WooBrevo_Outbox();
		$shipper = new WooBrevo_Shipper( $outbox, new WooBrevo_Payloads() );
		$totals  = array(
			'sent'     => 0,
			'acked'    => 0,
			'rejected' => 0,
			'error'    => null,
		);
		for ( $i = 0; $i < 50 && $outbox->depth() > 0; $i++ ) {
			$stats               = $shipper->tick();
			$totals['sent']     += $stats['sent'];
			$totals['acked']    += $stats['acked'];
			$totals['rejected'] += $stats['rejected'];
			$totals['error']     = $stats['error'] ?? $stats['skipped'];
			if ( null !== $stats['error'] ) {
				break;
			}
			if ( null !== $stats['skipped'] ) {
				usleep( 200000 );
			}
		}
		$totals['depth']    = $outbox->depth();
		$totals['rejected_list'] = $outbox->rejected( 10 );
		woobrevo_e2e_out( $totals );
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	case 'state':
		$outbox = new WooBrevo_Outbox();
		woobrevo_e2e_out(
			array(
				'blog_id'    => get_current_blog_id(),
				'depth'      => $outbox->depth(),
				'epoch'      => $outbox->epoch(),
				'last_error' => (string) WooBrevo_Settings::get( 'last_error' ),
				'backoff'    => ( new WooBrevo_Shipper( $outbox, new WooBrevo_Payloads() ) )->backoff(),
				'watch_meta' => WooBrevo_Settings::get( 'watch_meta' ),
			)
		);
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	default:
		fwrite( STDERR, "unknown command $woobrevo_cmd\n" );
		exit( 2 );
}
