<?php
/**
 * One shipper process for ShipperTest::test_two_shippers_at_once_send_each_row_once: loads the
 * test WordPress (WOOBREVO_WP_DIR), ticks until the outbox is empty, prints its totals as JSON.
 * With `stream SECONDS` it runs WooBrevo_Shipper::stream() instead (ShipperTest's stream test).
 *
 * @package WooBrevo
 */

require dirname( __DIR__ ) . '/wp-env/load.php';

$woobrevo_outbox  = new WooBrevo_Outbox();
$woobrevo_shipper = new WooBrevo_Shipper( $woobrevo_outbox, new WooBrevo_Payloads() );

// `php shipper_worker.php stream SECONDS`: run the `wp woobrevo stream` loop instead.
if ( 'stream' === ( $argv[1] ?? '' ) ) {
	echo "streaming\n";
	$woobrevo_shipper->stream( (int) ( $argv[2] ?? 5 ) );
	echo wp_json_encode( array( 'depth' => $woobrevo_outbox->depth() ) ), "\n";
	exit( 0 );
}
$woobrevo_totals  = array(
	'sent'   => 0,
	'acked'  => 0,
	'ticks'  => 0,
	'locked' => 0,
);
// Both processes start shipping at the same instant (WOOBREVO_START_AT, a Unix time the test
// sets a few seconds ahead), after their WordPress has loaded: a shipper now drains 1,500 rows
// in under a second, less than the other one's bootstrap, and they would never meet.
$woobrevo_start = (float) getenv( 'WOOBREVO_START_AT' );
if ( $woobrevo_start > microtime( true ) ) {
	time_sleep_until( $woobrevo_start );
}
$woobrevo_end     = microtime( true ) + 60;
while ( $woobrevo_outbox->depth() > 0 && microtime( true ) < $woobrevo_end ) {
	// Small budgets so the two processes take turns on the lock many times.
	$woobrevo_stats = $woobrevo_shipper->tick( 1 );
	++$woobrevo_totals['ticks'];
	$woobrevo_totals['sent']  += $woobrevo_stats['sent'];
	$woobrevo_totals['acked'] += $woobrevo_stats['acked'];
	if ( null !== $woobrevo_stats['error'] ) {
		fwrite( STDERR, 'tick error: ' . $woobrevo_stats['error'] . "\n" );
		exit( 1 );
	}
	if ( null !== $woobrevo_stats['skipped'] ) {
		++$woobrevo_totals['locked'];
		usleep( 5000 );
	}
}
echo wp_json_encode( $woobrevo_totals ), "\n";
