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
 * checkout VISITOR classic|block                 places the order from the cart, then the cart empties
 * restore-link URL                               the cart a restore link names (null: refused)
 *
 * Each cart command prints `cart_id` and `topics` (the cart rows this request wrote to the
 * outbox) and `snapshot` (what they ship). The visitor's browser lives between processes in an
 * option: its WooCommerce session keys, session id and cart, loaded at the start of the request
 * as WooCommerce loads a cart from its session (so an unchanged cart writes nothing).
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
 * Places the order of the visitor's cart as a checkout does: the order from the cart's lines,
 * the checkout's "order processed" action, the payment, then the emptied cart.
 *
 * @param string $checkout classic or block.
 * @return WC_Order
 */
function woobrevo_e2e_checkout( string $checkout ): WC_Order {
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
	$order->save();
	if ( 'block' === $checkout ) {
		do_action( 'woocommerce_store_api_checkout_order_processed', $order );
	} else {
		do_action( 'woocommerce_checkout_order_processed', $order->get_id(), array(), $order );
	}
	$order->update_status( 'processing' );
	WC()->cart->empty_cart();
	return $order;
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
		$after = woobrevo_e2e_last_row();
		$order = woobrevo_e2e_checkout( $checkout );
		woobrevo_e2e_visitor_save(
			$visitor,
			$after,
			array(
				'order_id' => (int) $order->get_id(),
				'total'    => (string) $order->get_total(),
			)
		);
		break;

	case 'restore-link':
		parse_str( (string) wp_parse_url( $woobrevo_args[0], PHP_URL_QUERY ), $query );
		$token = (string) ( $query[ WooBrevo_Carts::QUERY_ARG ] ?? '' );
		woobrevo_e2e_out( array( 'cart_id' => WooBrevo_Carts::verify( $token, WooBrevo_Carts::secret(), time() ) ) );
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
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
