<?php
/**
 * Shop traffic for the chaos suite (tests/chaos/): many store changes in one PHP process, made
 * through WooCommerce's own objects in the test WordPress, with the plugin capturing them.
 *
 *   WOOBREVO_WP_DIR=… php wp_traffic.php COMMAND [ARGS…]
 *
 * make TAG SEED COUNT SHIP_EVERY  COUNT random changes (customers made and edited, variable
 *                                 products and their variations made and repriced, coupons,
 *                                 orders placed and moved through their statuses, refunds, and
 *                                 shoppers' carts: see "Carts" below). Every
 *                                 SHIP_EVERY changes the plugin's shipper ticks, as the shutdown of
 *                                 the other shoppers' requests would (0: only at this process's
 *                                 own shutdown). What was made is kept in the option
 *                                 chaos_made_TAG, read by the next process and by `made`.
 * return TAG SEED AFTER           the shoppers who left carts come back (once AFTER seconds passed
 *                                 since the last left: the agent abandoned them), through the
 *                                 restore link; one in two checks out (a recovery).
 * made TAG                        everything made under TAG, read back from WooCommerce now: what
 *                                 Brevo must hold at the end (the audit's "truth").
 * cron                            one WP-Cron tick of the plugin (the backoff applies).
 *
 * Carts: shoppers (a new registered customer logged in, or a guest whose e-mail the block
 * checkout tells) fill carts, change them (an item more, a quantity, a line removed, a coupon),
 * empty them or check out (the classic checkout: the order, its "processed" action, payment,
 * the emptied cart). A shopper lives in one `make` process (its WooCommerce session and cart
 * in memory, swapped in as WC()->session and WC()->cart for each of its changes); a cart still
 * open when the process ends is left: the agent's timer abandons it, and one in two of those
 * shoppers comes back in a later process through the cart's restore link (`cart.restored`) and
 * may check out: a recovery when that came after the abandonment. Shoppers are kept apart
 * from the customers other orders are placed for, so only its own checkout ends a cart (one
 * order settles every open cart of its buyer, docs/carts.md). `made` lists each cart with how
 * it ended and the plugin's last snapshot of it.
 *
 * Prints one JSON object.
 *
 * @package WooBrevo\Tests
 */

require dirname( __DIR__ ) . '/php/wp-env/load.php';

/** Seconds a left cart stays left before its shopper may come back: some before the chaos agent abandons it (audit.py ABANDON_AFTER), some after. */
const CHAOS_RETURN_AFTER = 2;

$chaos_args = array_slice( $argv, 1 );
$chaos_cmd  = (string) array_shift( $chaos_args );
wp_set_current_user( 1 );

/**
 * The option that lists what a run made.
 *
 * @param string $tag The run's tag.
 * @return string
 */
function chaos_option( string $tag ): string {
	return 'chaos_made_' . $tag;
}

/**
 * What a run made so far.
 *
 * @param string $tag The run's tag.
 * @return array
 */
function chaos_load( string $tag ): array {
	$made = get_option( chaos_option( $tag ) );
	$base = array(
		'customers' => array(),
		'products'  => array(),
		'coupons'   => array(),
		'orders'    => array(),
		'shoppers'  => array(),
		'carts'     => array(),
		'returning' => array(),
		'lost'      => 0,
		'seq'       => 0,
	);
	return is_array( $made ) ? array_merge( $base, $made ) : $base;
}

/**
 * A random element of a non-empty list.
 *
 * @param array $items The list.
 * @return mixed
 */
function chaos_pick( array $items ) {
	$items = array_values( $items );
	return $items[ mt_rand( 0, count( $items ) - 1 ) ];
}

/**
 * A new registered customer.
 *
 * @param array  $made What the run made.
 * @param string $tag  The run's tag.
 * @param string $list Where it is kept: customers (orders are placed for them) or shoppers.
 * @return string
 */
function chaos_customer_new( array &$made, string $tag, string $list = 'customers' ): string {
	$n     = ++$made['seq'];
	$email = "c{$n}.{$tag}@chaos.example.com";
	$id    = wc_create_new_customer( $email, "c{$n}{$tag}", 'pw-' . wp_generate_password( 12, false ) );
	if ( is_wp_error( $id ) ) {
		fwrite( STDERR, $id->get_error_message() . "\n" );
		exit( 1 );
	}
	$customer = new WC_Customer( $id );
	$first    = chaos_pick( array( 'Ann', 'Bob', 'Chloé', 'Dan', 'Eve' ) );
	$customer->set_first_name( $first );
	$customer->set_last_name( "L{$n}" );
	$customer->set_billing_first_name( $first );
	$customer->set_billing_last_name( "L{$n}" );
	$customer->set_billing_email( $email );
	$customer->set_billing_city( 'Lyon' );
	$customer->set_billing_country( 'FR' );
	$customer->save();
	$made[ $list ][] = (int) $id;
	return 'customer.created';
}

/**
 * A customer edits their profile: a new first name and city.
 *
 * @param array $made What the run made.
 * @return string
 */
function chaos_customer_edit( array &$made ): string {
	$customer = new WC_Customer( (int) chaos_pick( $made['customers'] ) );
	$first    = chaos_pick( array( 'Ann', 'Anne', 'Bea', 'Cyd', 'Dora', 'Éloïse' ) ) . mt_rand( 1, 999 );
	$customer->set_first_name( $first );
	$customer->set_billing_first_name( $first );
	$customer->set_billing_city( chaos_pick( array( 'Lyon', 'Paris', 'Nantes', 'Lille', 'Köln' ) ) );
	$customer->save();
	return 'customer.updated';
}

/**
 * A variable product with two variations.
 *
 * @param array  $made What the run made.
 * @param string $tag  The run's tag.
 * @return string
 */
function chaos_product_new( array &$made, string $tag ): string {
	$n       = ++$made['seq'];
	$product = new WC_Product_Variable();
	$product->set_name( "Chaos {$tag} {$n}" );
	$product->set_sku( "CH-{$tag}-{$n}" );
	$product->set_regular_price( '20.00' );
	$parent     = (int) $product->save();
	$variations = array();
	foreach ( array( 'Red' => '20.00', 'Blue' => '22.50' ) as $color => $price ) {
		$variation = new WC_Product_Variation();
		$variation->set_parent_id( $parent );
		$variation->set_name( "Chaos {$tag} {$n} - {$color}" );
		$variation->set_regular_price( $price );
		$variation->set_sku( "CH-{$tag}-{$n}-{$color}" );
		$variations[] = (int) $variation->save();
	}
	$made['products'][ $parent ] = $variations;
	return 'product.created';
}

/**
 * A product renamed, or one of its variations repriced.
 *
 * @param array $made What the run made.
 * @return string
 */
function chaos_product_edit( array &$made ): string {
	$parent = (int) chaos_pick( array_keys( $made['products'] ) );
	if ( mt_rand( 0, 1 ) ) {
		$product = wc_get_product( $parent );
		$product->set_name( preg_replace( '/ v\d+$/', '', $product->get_name() ) . ' v' . mt_rand( 2, 999 ) );
		$product->save();
		return 'product.updated';
	}
	$variation = wc_get_product( (int) chaos_pick( $made['products'][ $parent ] ) );
	$variation->set_regular_price( sprintf( '%d.%02d', mt_rand( 5, 90 ), mt_rand( 0, 99 ) ) );
	$variation->save();
	return 'variation.updated';
}

/**
 * A new percent coupon, or one's amount changed.
 *
 * @param array  $made What the run made.
 * @param string $tag  The run's tag.
 * @return string
 */
function chaos_coupon( array &$made, string $tag ): string {
	if ( $made['coupons'] && mt_rand( 0, 2 ) === 0 ) {
		$coupon = new WC_Coupon( (int) chaos_pick( $made['coupons'] ) );
		$coupon->set_amount( (string) mt_rand( 5, 40 ) );
		$coupon->save();
		return 'coupon.updated';
	}
	$n      = ++$made['seq'];
	$coupon = new WC_Coupon();
	$coupon->set_code( "chaos{$tag}{$n}" );
	$coupon->set_discount_type( 'percent' );
	$coupon->set_amount( '10' );
	$made['coupons'][] = (int) $coupon->save();
	return 'coupon.created';
}

/**
 * An order by a customer of the run, pending.
 *
 * @param array $made What the run made.
 * @return string
 */
function chaos_order_new( array &$made ): string {
	$customer = new WC_Customer( (int) chaos_pick( $made['customers'] ) );
	$parent   = (int) chaos_pick( array_keys( $made['products'] ) );
	// One save, as a checkout or a REST POST makes it (wc_create_order() would save an empty one first).
	$order = new WC_Order();
	$order->set_customer_id( $customer->get_id() );
	$order->add_product( wc_get_product( (int) chaos_pick( $made['products'][ $parent ] ) ), mt_rand( 1, 3 ) );
	$order->set_billing_first_name( $customer->get_first_name() );
	$order->set_billing_last_name( $customer->get_last_name() );
	$order->set_billing_email( $customer->get_email() );
	$order->set_billing_city( 'Lyon' );
	$order->set_billing_country( 'FR' );
	if ( $made['coupons'] && method_exists( $order, 'apply_coupon' ) && mt_rand( 0, 2 ) === 0 ) {
		$order->apply_coupon( ( new WC_Coupon( (int) chaos_pick( $made['coupons'] ) ) )->get_code() );
	}
	$order->calculate_totals();
	$order->set_status( 'pending' );
	$order->save();
	$made['orders'][ (int) $order->get_id() ] = 'pending';
	return 'order.created';
}

/**
 * The next step of an order that has one: pending → processing, on-hold or cancelled;
 * on-hold → processing; processing → completed; completed → one partial refund.
 *
 * @param array $made What the run made.
 * @return string|null Null when no order can move.
 */
function chaos_order_step( array &$made ): ?string {
	$next  = array(
		'pending'    => array( 'processing', 'processing', 'on-hold', 'cancelled' ),
		'on-hold'    => array( 'processing' ),
		'processing' => array( 'completed' ),
		'completed'  => array( 'refund' ),
	);
	$moving = array_keys( array_filter( $made['orders'], static fn( $s ) => isset( $next[ $s ] ) ) );
	if ( ! $moving ) {
		return null;
	}
	$id = (int) chaos_pick( $moving );
	$to = chaos_pick( $next[ $made['orders'][ $id ] ] );
	if ( 'refund' === $to ) {
		$refund = wc_create_refund(
			array(
				'order_id' => $id,
				'amount'   => '1.00',
				'reason'   => 'chaos',
			)
		);
		if ( is_wp_error( $refund ) ) {
			fwrite( STDERR, $refund->get_error_message() . "\n" );
			exit( 1 );
		}
		$made['orders'][ $id ] = 'refunded-once';
		return 'order.refunded';
	}
	wc_get_order( $id )->update_status( $to );
	$made['orders'][ $id ] = $to;
	return 'order.' . $to;
}

/**
 * Makes a shopper's request current: the user (or none), WooCommerce's session and cart.
 *
 * @param array|null $shopper The shopper, or null: back to the admin, with no cart.
 * @return void
 */
function chaos_as( ?array $shopper ): void {
	$wc = WC();
	if ( null === $shopper ) {
		$wc->session  = null;
		$wc->cart     = null;
		$wc->customer = null;
		wp_set_current_user( 1 );
		return;
	}
	wp_set_current_user( $shopper['user'] );
	$wc->session  = $shopper['session'];
	$wc->cart     = $shopper['cart'];
	$wc->customer = new WC_Customer( $shopper['user'] );
}

/**
 * A random variation of the run's products into the current cart (one to three of it).
 *
 * @param array $made What the run made.
 * @return void
 */
function chaos_cart_add( array $made ): void {
	$parent = (int) chaos_pick( array_keys( $made['products'] ) );
	WC()->cart->add_to_cart( $parent, mt_rand( 1, 3 ), (int) chaos_pick( $made['products'][ $parent ] ) );
}

/**
 * The cart the plugin holds for a shopper's session now (0: none captured).
 *
 * @param array $shopper The shopper.
 * @return int
 */
function chaos_cart_id( array $shopper ): int {
	global $wpdb;
	$key   = $shopper['user'] > 0 ? (string) $shopper['user'] : 'guest:' . $shopper['session']->get_customer_id();
	$table = WooBrevo_Schema::carts_table();
	return (int) $wpdb->get_var( $wpdb->prepare( "SELECT id FROM {$table} WHERE session_key = %s ORDER BY id DESC LIMIT 1", $key ) ); // phpcs:ignore -- the table name is the plugin's.
}

/**
 * A new shopper fills a cart: a customer who registers and is logged in, or (one in three) a
 * guest, captured once the block checkout tells their e-mail.
 *
 * @param array  $made     What the run made.
 * @param string $tag      The run's tag.
 * @param array  $shoppers This process's shoppers with an open cart.
 * @return string
 */
function chaos_cart_new( array &$made, string $tag, array &$shoppers ): string {
	$guest = 0 === mt_rand( 0, 2 );
	$user  = 0;
	if ( $guest ) {
		$n     = ++$made['seq'];
		$email = "g{$n}.{$tag}@chaos.example.com";
	} else {
		chaos_customer_new( $made, $tag, 'shoppers' );
		$user  = (int) end( $made['shoppers'] );
		$email = ( new WC_Customer( $user ) )->get_email();
	}
	$shopper = array(
		'user'    => $user,
		'email'   => $email,
		'session' => new WC_Session_Handler(),
		'cart'    => new WC_Cart(),
		'cart_id' => 0,
	);
	chaos_as( $shopper );
	chaos_cart_add( $made );
	if ( mt_rand( 0, 1 ) ) {
		chaos_cart_add( $made );
	}
	if ( $guest ) {
		// The block checkout's customer update (wc-double-cart.php), as wp_scenario.php's cart-email.
		$customer = new WC_Customer();
		$customer->set_billing_email( $email );
		$request = new WP_REST_Request( 'PUT', '/wc/store/v1/checkout' );
		$request->set_param( 'billing_address', array( 'email' => $email ) );
		do_action( 'woocommerce_store_api_cart_update_customer_from_request', $customer, $request );
	}
	$shopper['cart_id'] = chaos_cart_id( $shopper );
	chaos_as( null );
	if ( 0 === $shopper['cart_id'] ) {
		++$made['lost']; // The plugin captured no cart: the audit names it.
		return 'cart.lost';
	}
	$made['carts'][ $shopper['cart_id'] ] = array(
		'email'    => $email,
		'customer' => $user,
		'end'      => 'open',
		'order'    => 0,
		'restored' => 0,
	);
	$shoppers[] = $shopper;
	return 'cart.started';
}

/**
 * A shopper changes their cart: an item more, a quantity, a line removed or a coupon.
 *
 * @param array $made    What the run made.
 * @param array $shopper The shopper.
 * @return string
 */
function chaos_cart_change( array $made, array $shopper ): string {
	chaos_as( $shopper );
	$cart  = WC()->cart;
	$lines = array_keys( $cart->get_cart() );
	$roll  = mt_rand( 1, 4 );
	if ( 4 === $roll && $made['coupons'] && ! $cart->get_applied_coupons() ) {
		$cart->apply_coupon( ( new WC_Coupon( (int) chaos_pick( $made['coupons'] ) ) )->get_code() );
		wc_clear_notices();
	} elseif ( 3 === $roll && count( $lines ) > 1 ) {
		$cart->remove_cart_item( chaos_pick( $lines ) );
	} elseif ( 2 === $roll ) {
		$line = chaos_pick( $lines );
		$cart->set_quantity( $line, $cart->get_cart()[ $line ]['quantity'] % 4 + 1 );
	} else {
		chaos_cart_add( $made );
	}
	chaos_as( null );
	return 'cart.changed';
}

/**
 * A shopper checks out (the classic checkout, as wp_scenario.php's `checkout`): the order from
 * the cart's lines and coupons, its "processed" action, the payment, the emptied cart.
 *
 * @param array $made    What the run made.
 * @param array $shopper The shopper.
 * @return string
 */
function chaos_cart_checkout( array &$made, array $shopper ): string {
	chaos_as( $shopper );
	$cart  = WC()->cart;
	$order = new WC_Order();
	$order->set_customer_id( $shopper['user'] );
	foreach ( $cart->get_cart() as $item ) {
		$order->add_product( $item['data'], (int) $item['quantity'] );
	}
	$order->set_billing_first_name( 'Sam' );
	$order->set_billing_last_name( 'Shopper' );
	$order->set_billing_email( $shopper['email'] );
	$order->set_billing_city( 'Lyon' );
	$order->set_billing_country( 'FR' );
	if ( method_exists( $order, 'apply_coupon' ) ) {
		foreach ( $cart->get_applied_coupons() as $code ) {
			$order->apply_coupon( $code );
		}
	}
	$order->calculate_totals();
	$order->set_status( 'pending' );
	$order->save();
	do_action( 'woocommerce_checkout_order_processed', $order->get_id(), array(), $order );
	$order->update_status( 'processing' );
	$cart->empty_cart();
	chaos_as( null );
	$made['orders'][ (int) $order->get_id() ] = 'processing';
	$made['carts'][ $shopper['cart_id'] ]['end']   = 'ordered';
	$made['carts'][ $shopper['cart_id'] ]['order'] = (int) $order->get_id();
	return 'cart.ordered';
}

/**
 * A shopper whose cart was left in an earlier process comes back through its restore link (a
 * new browser: WooBrevo_Carts::restore() rebuilds the cart, `cart.restored`), and checks out
 * now or later in this process (one in two), or leaves it again.
 *
 * @param array $made     What the run made.
 * @param array $shoppers This process's shoppers with an open cart.
 * @param int   $after    Seconds the cart must have been left for.
 * @return string|null Null when no left cart is old enough yet.
 */
function chaos_cart_return( array &$made, array &$shoppers, int $after = CHAOS_RETURN_AFTER ): ?string {
	$left = $made['returning'][0] ?? null;
	if ( null === $left || time() - $left['left'] < $after ) {
		return null;
	}
	array_shift( $made['returning'] );
	$shopper  = array(
		'user'    => $left['user'],
		'email'   => $left['email'],
		'session' => new WC_Session_Handler(),
		'cart'    => new WC_Cart(),
		'cart_id' => $left['cart_id'],
	);
	$snapshot = WooBrevo_Carts::stored_snapshot( $left['cart_id'] );
	parse_str( (string) wp_parse_url( (string) ( $snapshot['restore_url'] ?? '' ), PHP_URL_QUERY ), $query );
	chaos_as( $shopper );
	$to = ( new WooBrevo_Carts() )->restore( (string) ( $query[ WooBrevo_Carts::QUERY_ARG ] ?? '' ) );
	wc_clear_notices();
	chaos_as( null );
	if ( null === $to ) {
		fwrite( STDERR, "the restore link of cart {$left['cart_id']} was refused\n" );
		exit( 1 );
	}
	++$made['carts'][ $left['cart_id'] ]['restored'];
	if ( mt_rand( 0, 1 ) ) {
		return chaos_cart_checkout( $made, $shopper );
	}
	$shoppers[] = $shopper;
	return 'cart.restored';
}

/**
 * One cart change: a new shopper, or one of this process's open carts changed, emptied or
 * checked out (an ended cart's shopper leaves).
 *
 * @param array  $made     What the run made.
 * @param string $tag      The run's tag.
 * @param array  $shoppers This process's shoppers with an open cart.
 * @return string
 */
function chaos_cart( array &$made, string $tag, array &$shoppers ): string {
	$roll = mt_rand( 1, 100 );
	if ( $roll <= 30 ) {
		$back = chaos_cart_return( $made, $shoppers );
		if ( null !== $back ) {
			return $back;
		}
	}
	if ( ! $shoppers || $roll <= 30 ) {
		return chaos_cart_new( $made, $tag, $shoppers );
	}
	$at      = mt_rand( 0, count( $shoppers ) - 1 );
	$shopper = $shoppers[ $at ];
	if ( $roll <= 65 ) {
		return chaos_cart_change( $made, $shopper );
	}
	array_splice( $shoppers, $at, 1 );
	if ( $roll <= 77 ) {
		chaos_as( $shopper );
		WC()->cart->empty_cart();
		chaos_as( null );
		$made['carts'][ $shopper['cart_id'] ]['end'] = 'emptied';
		return 'cart.emptied';
	}
	return chaos_cart_checkout( $made, $shopper );
}

/**
 * One random change; the first ones make what the others need. One in five is a cart's.
 *
 * @param array  $made     What the run made.
 * @param string $tag      The run's tag.
 * @param array  $shoppers This process's shoppers with an open cart.
 * @return string What changed.
 */
function chaos_change( array &$made, string $tag, array &$shoppers ): string {
	if ( count( $made['customers'] ) < 3 ) {
		return chaos_customer_new( $made, $tag );
	}
	if ( ! $made['products'] ) {
		return chaos_product_new( $made, $tag );
	}
	if ( mt_rand( 1, 100 ) <= 20 ) {
		return chaos_cart( $made, $tag, $shoppers );
	}
	$roll = mt_rand( 1, 100 );
	if ( $roll <= 12 ) {
		return chaos_customer_new( $made, $tag );
	}
	if ( $roll <= 24 ) {
		return chaos_customer_edit( $made );
	}
	if ( $roll <= 28 ) {
		return chaos_product_new( $made, $tag );
	}
	if ( $roll <= 36 ) {
		return chaos_product_edit( $made );
	}
	if ( $roll <= 42 ) {
		return chaos_coupon( $made, $tag );
	}
	if ( $roll <= 62 ) {
		return chaos_order_new( $made );
	}
	return chaos_order_step( $made ) ?? chaos_order_new( $made );
}

/**
 * Everything a run made, as WooCommerce holds it now.
 *
 * @param array $made What the run made.
 * @return array
 */
function chaos_truth( array $made ): array {
	$out = array(
		'customers'  => array(),
		'orders'     => array(),
		'products'   => array(),
		'variations' => array(),
		'coupons'    => array(),
		'carts'      => array(),
		'carts_lost' => (int) $made['lost'],
	);
	foreach ( array_merge( $made['customers'], $made['shoppers'] ) as $id ) {
		$c                  = new WC_Customer( (int) $id );
		$out['customers'][] = array(
			'id'         => (int) $id,
			'email'      => $c->get_email(),
			'first_name' => $c->get_first_name(),
			'last_name'  => $c->get_last_name(),
			'city'       => $c->get_billing_city(),
		);
	}
	foreach ( array_keys( $made['orders'] ) as $id ) {
		$o               = wc_get_order( (int) $id );
		$out['orders'][] = array(
			'id'       => (int) $id,
			'email'    => $o->get_billing_email(),
			'status'   => $o->get_status(),
			'total'    => (string) $o->get_total(),
			'refunds'  => count( $o->get_refunds() ),
			'customer' => (int) $o->get_customer_id(),
		);
	}
	foreach ( $made['products'] as $parent => $variations ) {
		$p                 = wc_get_product( (int) $parent );
		$out['products'][] = array(
			'id'   => (int) $parent,
			'name' => $p->get_name(),
		);
		foreach ( $variations as $vid ) {
			$v                   = wc_get_product( (int) $vid );
			$out['variations'][] = array(
				'id'     => (int) $vid,
				'parent' => (int) $parent,
				'price'  => (string) $v->get_regular_price(),
			);
		}
	}
	foreach ( $made['coupons'] as $id ) {
		$c                = new WC_Coupon( (int) $id );
		$out['coupons'][] = array(
			'id'   => (int) $id,
			'code' => $c->get_code(),
		);
	}
	foreach ( $made['carts'] as $id => $cart ) {
		$out['carts'][] = array_merge(
			array( 'id' => (int) $id ),
			$cart,
			array( 'snapshot' => WooBrevo_Carts::stored_snapshot( (int) $id ) )
		);
	}
	return $out;
}

switch ( $chaos_cmd ) {
	case 'make':
		list( $tag, $seed, $count, $ship_every ) = $chaos_args;
		mt_srand( (int) $seed );
		$made     = chaos_load( $tag );
		$changes  = array();
		$ticks    = array();
		$shoppers = array();
		for ( $i = 1; $i <= (int) $count; $i++ ) {
			$what             = chaos_change( $made, $tag, $shoppers );
			$changes[ $what ] = ( $changes[ $what ] ?? 0 ) + 1;
			// Kept after every change: a process that dies keeps what it made known.
			update_option( chaos_option( $tag ), $made, false );
			if ( (int) $ship_every > 0 && 0 === $i % (int) $ship_every ) {
				// Another request's shutdown: it starts with an empty object cache, so it reads what
				// the other stream's processes changed meanwhile.
				wp_cache_flush_runtime();
				$stats   = WooBrevo_Plugin::shipper()->tick( 10 );
				$ticks[] = $stats['error'] ?? $stats['skipped'] ?? $stats['acked'];
			}
		}
		// The shoppers still here leave their carts; one in two comes back in a later process.
		foreach ( $shoppers as $shopper ) {
			if ( mt_rand( 0, 1 ) ) {
				$made['returning'][] = array(
					'cart_id' => $shopper['cart_id'],
					'user'    => $shopper['user'],
					'email'   => $shopper['email'],
					'left'    => time(),
				);
			}
		}
		update_option( chaos_option( $tag ), $made, false );
		echo wp_json_encode(
			array(
				'changes' => $changes,
				'ticks'   => $ticks,
			)
		), "\n";
		break;

	case 'return':
		list( $tag, $seed, $after ) = $chaos_args;
		mt_srand( (int) $seed );
		$made     = chaos_load( $tag );
		$changes  = array();
		$shoppers = array();
		$last     = max( array_merge( array( 0 ), array_column( $made['returning'], 'left' ) ) );
		if ( $last + (int) $after > time() ) {
			sleep( $last + (int) $after - time() ); // Until the last one left was abandoned.
		}
		while ( $made['returning'] ) {
			$what             = (string) chaos_cart_return( $made, $shoppers, 0 );
			$changes[ $what ] = ( $changes[ $what ] ?? 0 ) + 1;
			update_option( chaos_option( $tag ), $made, false );
		}
		echo wp_json_encode( array( 'changes' => $changes ) ), "\n";
		break;

	case 'made':
		echo wp_json_encode( chaos_truth( chaos_load( $chaos_args[0] ) ) ), "\n";
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	case 'cron':
		update_option( WooBrevo_Options::LAST_TICK, time() );
		echo wp_json_encode( WooBrevo_Plugin::shipper()->tick( 10 ) ), "\n";
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	default:
		fwrite( STDERR, "unknown command $chaos_cmd\n" );
		exit( 2 );
}
