<?php
/**
 * Shop traffic for the chaos suite (tests/chaos/): many store changes in one PHP process, made
 * through WooCommerce's own objects in the test WordPress, with the plugin capturing them.
 *
 *   WOOBREVO_WP_DIR=… php wp_traffic.php COMMAND [ARGS…]
 *
 * make TAG SEED COUNT SHIP_EVERY  COUNT random changes (customers made and edited, variable
 *                                 products and their variations made and repriced, coupons,
 *                                 orders placed and moved through their statuses, refunds). Every
 *                                 SHIP_EVERY changes the plugin's shipper ticks, as the shutdown of
 *                                 the other shoppers' requests would (0: only at this process's
 *                                 own shutdown). What was made is kept in the option
 *                                 chaos_made_TAG, read by the next process and by `made`.
 * made TAG                        everything made under TAG, read back from WooCommerce now: what
 *                                 Brevo must hold at the end (the audit's "truth").
 * cron                            one WP-Cron tick of the plugin (the backoff applies).
 *
 * Prints one JSON object.
 *
 * @package WooBrevo\Tests
 */

require dirname( __DIR__ ) . '/php/wp-env/load.php';

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
 * @return string
 */
function chaos_customer_new( array &$made, string $tag ): string {
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
	$made['customers'][] = (int) $id;
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
 * One random change; the first ones make what the others need.
 *
 * @param array  $made What the run made.
 * @param string $tag  The run's tag.
 * @return string What changed.
 */
function chaos_change( array &$made, string $tag ): string {
	if ( count( $made['customers'] ) < 3 ) {
		return chaos_customer_new( $made, $tag );
	}
	if ( ! $made['products'] ) {
		return chaos_product_new( $made, $tag );
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
	);
	foreach ( $made['customers'] as $id ) {
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
	return $out;
}

switch ( $chaos_cmd ) {
	case 'make':
		list( $tag, $seed, $count, $ship_every ) = $chaos_args;
		mt_srand( (int) $seed );
		$made    = chaos_load( $tag );
		$changes = array();
		$ticks   = array();
		for ( $i = 1; $i <= (int) $count; $i++ ) {
			$what             = chaos_change( $made, $tag );
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
		echo wp_json_encode(
			array(
				'changes' => $changes,
				'ticks'   => $ticks,
			)
		), "\n";
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
