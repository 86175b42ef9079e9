<?php
/**
 * Cost of the plugin on an order save (goal ≤ 1 ms added, no network inside the request).
 *
 * Inside the WordPress that tests/php/run.sh installed (with the WooCommerce test double, or a
 * real WooCommerce from WOOBREVO_WC_DIR), in one run: the same order updates with the plugin's
 * hooks registered ("on") and with every WooBrevo callback removed ("off"), interleaved in
 * rounds so that drift in the machine hits both alike. Each save is its own simulated request
 * (the outbox's per-request collapsing is reset), so every "on" save writes one outbox row.
 * The shipper is kept out (`woobrevo_ship_on_shutdown` false): it runs after the response.
 *
 *   WOOBREVO_WP_DIR=/tmp/…/wp-single php bench/plugin_order_save.php [--orders 50] [--rounds 20]
 * bench/plugin_run.sh sets WordPress up with tests/php/run.sh and runs this and the throughput bench.
 * Prints one JSON line.
 *
 * @package WooBrevo
 */

$woobrevo_opts   = getopt( '', array( 'orders:', 'rounds:' ) );
$woobrevo_orders = (int) ( $woobrevo_opts['orders'] ?? 50 );
$woobrevo_rounds = (int) ( $woobrevo_opts['rounds'] ?? 20 );

require dirname( __DIR__ ) . '/tests/php/wp-env/load.php';
require __DIR__ . '/plugin_bench.php';

add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
// No agent: nothing may try the network anyway; a configured URL proves that no save opens a socket.
WooBrevo_Settings::set( 'agent_url', 'ws://192.0.2.1:9/v1/stream' );
WooBrevo_Settings::set( 'token', 'bench-token-0123456789abcdefghijklmnop' );

// Orders to update: created once, outside the measurement.
$woobrevo_ids = array();
for ( $i = 0; $i < $woobrevo_orders; $i++ ) {
	$order = wc_create_order( array( 'customer_id' => 0 ) );
	$order->set_billing_email( "bench$i@example.com" );
	$order->set_status( 'processing' );
	$order->save();
	$woobrevo_ids[] = $order->get_id();
}
$woobrevo_outbox = new WooBrevo_Outbox();
$woobrevo_rows0  = $woobrevo_outbox->depth();

$woobrevo_times = array(
	'on'  => array(),
	'off' => array(),
);
$woobrevo_seq   = 0;
for ( $round = 0; $round < $woobrevo_rounds; $round++ ) {
	// Alternate which mode goes first in a round.
	foreach ( 0 === $round % 2 ? array( 'on', 'off' ) : array( 'off', 'on' ) as $mode ) {
		$removed = 'off' === $mode ? woobrevo_bench_unhook() : array();
		foreach ( $woobrevo_ids as $id ) {
			WooBrevo_Outbox::reset_request(); // A new request: no collapsing with the previous save.
			wp_cache_flush_runtime();
			++$woobrevo_seq;
			$t0    = hrtime( true );
			$order = wc_get_order( $id );
			$order->set_customer_note( "note $woobrevo_seq" );
			$order->save();
			$woobrevo_times[ $mode ][] = ( hrtime( true ) - $t0 ) / 1e6;
		}
		woobrevo_bench_restore( $removed );
	}
}


$woobrevo_on  = woobrevo_bench_stats( $woobrevo_times['on'], 3 );
$woobrevo_off = woobrevo_bench_stats( $woobrevo_times['off'], 3 );
$woobrevo_new = $woobrevo_outbox->depth() - $woobrevo_rows0;
echo wp_json_encode(
	array(
		'bench'             => 'plugin_order_save',
		'saves_per_mode'    => count( $woobrevo_times['on'] ),
		'on_ms'             => $woobrevo_on,
		'off_ms'            => $woobrevo_off,
		'added_median_ms'   => round( $woobrevo_on['median'] - $woobrevo_off['median'], 3 ),
		'added_mean_ms'     => round( $woobrevo_on['mean'] - $woobrevo_off['mean'], 3 ),
		'outbox_rows_added' => $woobrevo_new,
		'woocommerce'       => defined( 'WC_VERSION' ) ? WC_VERSION : 'double',
		'wordpress'         => get_bloginfo( 'version' ),
		'php'               => PHP_VERSION,
	)
), "\n";

// Leave the test WordPress as it was.
global $wpdb;
$wpdb->query( 'DELETE FROM ' . $woobrevo_outbox->table() ); // phpcs:ignore -- no input.
foreach ( $woobrevo_ids as $id ) {
	wc_get_order( $id )->delete( true );
}
WooBrevo_Settings::set( 'agent_url', '' );
WooBrevo_Settings::set( 'token', '' );
