<?php
/**
 * Cost of the plugin's cart capture on a page view that loads an unchanged cart (goal ≤ 1 ms
 * added, no row written, no network).
 *
 * WooCommerce fires `woocommerce_cart_updated` on most page views that load a cart (the session
 * load, every totals calculation); the capture hashes the cart and compares it with the hash kept
 * in the session. Inside the WordPress that tests/php/run.sh installed (the WooCommerce test
 * double, or a real WooCommerce from WOOBREVO_WC_DIR), a logged-in shopper's three-item cart is
 * captured once, then each "page view" recalculates the totals (which fires the hook, as the cart
 * and checkout pages do) with the plugin's hooks registered ("on") and with every WooBrevo
 * callback removed ("off"), interleaved in rounds. Each view starts with the object cache's
 * runtime part flushed and the autoloaded options loaded again, as WordPress has them before any
 * cart loads. `hook_call_us` is the capture callback alone.
 *
 *   WOOBREVO_WP_DIR=/tmp/…/wp-single php bench/plugin_cart_view.php [--views 200] [--rounds 20]
 * bench/plugin_run.sh sets WordPress up with tests/php/run.sh and runs it. Prints one JSON line.
 *
 * @package WooBrevo
 */

$woobrevo_opts   = getopt( '', array( 'views:', 'rounds:' ) );
$woobrevo_views  = (int) ( $woobrevo_opts['views'] ?? 200 );
$woobrevo_rounds = (int) ( $woobrevo_opts['rounds'] ?? 20 );

require dirname( __DIR__ ) . '/tests/php/wp-env/load.php';
require __DIR__ . '/plugin_bench.php';

add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );


// A shopper and a three-item cart, captured once outside the measurement.
$woobrevo_user = wp_insert_user(
	array(
		'user_login' => 'bench-cart-' . wp_generate_password( 6, false ),
		'user_email' => 'bench-cart-' . wp_generate_password( 6, false ) . '@example.com',
		'user_pass'  => wp_generate_password(),
	)
);
wp_set_current_user( $woobrevo_user );
if ( null === WC()->cart ) {
	wc_load_cart();
}
$woobrevo_products = array();
foreach ( array( 'Cap' => '10', 'Scarf' => '20', 'Gloves' => '15' ) as $name => $price ) {
	$product = new WC_Product_Simple();
	$product->set_name( 'Bench ' . $name );
	$product->set_regular_price( $price );
	$product->save();
	$woobrevo_products[] = $product->get_id();
	WC()->cart->add_to_cart( $product->get_id(), 2 );
}
$woobrevo_outbox = new WooBrevo_Outbox();
$woobrevo_rows0  = $woobrevo_outbox->depth();

$woobrevo_times = array(
	'on'  => array(),
	'off' => array(),
);
for ( $round = 0; $round < $woobrevo_rounds; $round++ ) {
	foreach ( 0 === $round % 2 ? array( 'on', 'off' ) : array( 'off', 'on' ) as $mode ) {
		$removed = 'off' === $mode ? woobrevo_bench_unhook() : array();
		for ( $i = 0; $i < $woobrevo_views; $i++ ) {
			WooBrevo_Outbox::reset_request(); // A new request, where WordPress has loaded its autoloaded options before any cart.
			wp_cache_flush_runtime();
			wp_load_alloptions();
			$t0 = hrtime( true );
			WC()->cart->calculate_totals();
			$woobrevo_times[ $mode ][] = ( hrtime( true ) - $t0 ) / 1e6;
		}
		woobrevo_bench_restore( $removed );
	}
}

// The callback alone, as many times as the page views above.
$woobrevo_carts = new WooBrevo_Carts();
$woobrevo_calls = $woobrevo_rounds * $woobrevo_views;
$t0             = hrtime( true );
for ( $i = 0; $i < $woobrevo_calls; $i++ ) {
	$woobrevo_carts->action_woocommerce_cart_updated();
}
$woobrevo_call_us = ( hrtime( true ) - $t0 ) / 1e3 / $woobrevo_calls;

$woobrevo_on  = woobrevo_bench_stats( $woobrevo_times['on'] );
$woobrevo_off = woobrevo_bench_stats( $woobrevo_times['off'] );
echo wp_json_encode(
	array(
		'bench'             => 'plugin_cart_view',
		'views_per_mode'    => count( $woobrevo_times['on'] ),
		'on_ms'             => $woobrevo_on,
		'off_ms'            => $woobrevo_off,
		'added_median_ms'   => round( $woobrevo_on['median'] - $woobrevo_off['median'], 4 ),
		'added_mean_ms'     => round( $woobrevo_on['mean'] - $woobrevo_off['mean'], 4 ),
		'hook_call_us'      => round( $woobrevo_call_us, 2 ),
		'outbox_rows_added' => $woobrevo_outbox->depth() - $woobrevo_rows0,
		'woocommerce'       => defined( 'WC_VERSION' ) ? WC_VERSION : 'double',
		'wordpress'         => get_bloginfo( 'version' ),
		'php'               => PHP_VERSION,
	)
), "\n";

// Leave the test WordPress as it was.
global $wpdb;
wp_set_current_user( 0 );
$wpdb->query( 'DELETE FROM ' . $woobrevo_outbox->table() ); // phpcs:ignore -- no input.
$wpdb->query( 'DELETE FROM ' . WooBrevo_Schema::carts_table() ); // phpcs:ignore -- no input.
foreach ( $woobrevo_products as $id ) {
	wp_delete_post( $id, true );
}
require_once ABSPATH . 'wp-admin/includes/user.php';
wp_delete_user( $woobrevo_user );
