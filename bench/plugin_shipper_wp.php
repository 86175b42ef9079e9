<?php
/**
 * The "shipper" half of bench/plugin_shipper_throughput.php: WooBrevo_Shipper::tick() inside
 * the test WordPress (WOOBREVO_WP_DIR), payloads built through the REST controllers.
 *
 * @package WooBrevo
 */

/**
 * Fills the outbox with order.updated rows over a set of real orders and times the ticks that
 * drain it.
 *
 * @param array  $agent  From WsTestSupport::start_agent().
 * @param string $token  The site token.
 * @param int    $events Rows to ship.
 * @return array
 */
function bench_shipper_in_wordpress( array $agent, string $token, int $events ): array {
	require_once dirname( __DIR__ ) . '/tests/php/wp-env/load.php';
	global $wpdb;
	add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
	WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', $agent['port'] ) );
	WooBrevo_Settings::set( 'token', $token );
	WooBrevo_Settings::set( 'payload_user', 1 );
	delete_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION );
	delete_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION );

	$outbox = new WooBrevo_Outbox();
	$table  = $outbox->table();
	$wpdb->query( "DELETE FROM {$table}" ); // phpcs:ignore -- no input.
	$orders = array();
	for ( $i = 0; $i < 100; $i++ ) {
		$order = wc_create_order( array( 'customer_id' => 0 ) );
		$order->set_billing_email( "ship$i@example.com" );
		$order->set_billing_first_name( 'Ship' );
		$order->set_status( 'processing' );
		$order->save();
		$orders[] = $order->get_id();
	}
	$wpdb->query( "DELETE FROM {$table}" ); // phpcs:ignore -- no input.
	// One row per event, as capture would write them over many requests.
	$now = gmdate( 'Y-m-d H:i:s' );
	for ( $done = 0; $done < $events; $done += 500 ) {
		$values = array();
		for ( $i = $done; $i < min( $events, $done + 500 ); $i++ ) {
			$values[] = $wpdb->prepare( '(%s, %d, %s, %s)', 'order', $orders[ $i % count( $orders ) ], 'order.updated', $now );
		}
		$wpdb->query( "INSERT INTO {$table} (resource, resource_id, topic, occurred_at) VALUES " . implode( ',', $values ) ); // phpcs:ignore -- prepared above.
	}

	$shipper = new WooBrevo_Shipper( $outbox, new WooBrevo_Payloads() );
	$totals  = array(
		'acked' => 0,
		'ticks' => 0,
	);
	$t0      = microtime( true );
	while ( $outbox->depth() > 0 && $totals['ticks'] < 100 ) {
		$stats = $shipper->tick( 60 );
		++$totals['ticks'];
		$totals['acked'] += $stats['acked'];
		if ( null !== $stats['error'] ) {
			throw new RuntimeException( 'tick failed: ' . $stats['error'] );
		}
	}
	$elapsed = microtime( true ) - $t0;

	// Where the time goes: payload building alone, for the same rows' shape.
	$payloads = new WooBrevo_Payloads();
	$tb       = microtime( true );
	for ( $i = 0; $i < 300; $i++ ) {
		$payloads->build(
			array(
				'resource'    => 'order',
				'resource_id' => $orders[ $i % count( $orders ) ],
				'topic'       => 'order.updated',
				'extra'       => array(),
			),
			array()
		);
	}
	$build_ms = ( microtime( true ) - $tb ) / 300 * 1000;

	foreach ( $orders as $id ) {
		wc_get_order( $id )->delete( true );
	}
	$wpdb->query( "DELETE FROM {$table}" ); // phpcs:ignore -- no input.
	WooBrevo_Settings::set( 'agent_url', '' );
	WooBrevo_Settings::set( 'token', '' );
	return array(
		'bench'                => 'plugin_shipper_throughput',
		'mode'                 => 'shipper',
		'events'               => $totals['acked'],
		'ticks'                => $totals['ticks'],
		'seconds'              => round( $elapsed, 3 ),
		'events_per_s'         => (int) round( $totals['acked'] / $elapsed ),
		'payload_build_ms'     => round( $build_ms, 3 ),
		'woocommerce'          => defined( 'WC_VERSION' ) ? WC_VERSION : 'double',
		'php'                  => PHP_VERSION,
	);
}
