<?php
/**
 * Shipper throughput, PHP → agent (goal ≥ 1,000 events/s). Two measurements:
 *
 *   wire     The plugin's websocket client sends `events` batches of REST-order-sized events
 *            (about 2.5 KB each) to the real agent (`python -m agent.cli run`, Brevo dry-run)
 *            and waits for each ack, one batch in flight, exactly as the shipper does. This is
 *            the PHP → agent path without WordPress: framing, masking, the agent's commit.
 *   shipper  The whole WooBrevo_Shipper::tick() inside the WordPress that tests/php/run.sh
 *            installed (WOOBREVO_WP_DIR): claim rows from the outbox table on MariaDB, build each
 *            payload through WooCommerce's REST controllers (the test double's here), send,
 *            wait for acks, delete rows.
 *
 * Usage:
 *   php bench/plugin_shipper_throughput.php [--events 20000] [--batch 100]                 (wire)
 *   WOOBREVO_WP_DIR=… php bench/plugin_shipper_throughput.php --shipper [--events 5000]   (shipper)
 * bench/plugin_run.sh runs both (and bench/plugin_order_save.php), setting up WordPress with tests/php/run.sh.
 * Prints one JSON line per measurement.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

$opts   = getopt( '', array( 'events:', 'batch:', 'shipper', 'json' ) );
$events = (int) ( $opts['events'] ?? 20000 );
$batch  = (int) ( $opts['batch'] ?? 100 );
$repo   = dirname( __DIR__ );

require_once $repo . '/tests/php/unit/WsTestSupport.php';

$token = 'bench-token-' . bin2hex( random_bytes( 24 ) );
$dir   = WsTestSupport::temp_dir();
$agent = WsTestSupport::start_agent(
	$dir,
	array_filter( array( 'log_level' => 'warning', 'state_dir' => getenv( 'WOOBREVO_BENCH_STATE_DIR' ) ?: null ) ),
	array(
		array(
			'id'    => 'default',
			'token' => $token,
		),
	)
);

try {
	if ( isset( $opts['shipper'] ) ) {
		$result = bench_shipper( $agent, $token, $events );
	} else {
		$result = bench_wire( $agent, $token, $events, $batch, $repo );
	}
	echo json_encode( $result, JSON_UNESCAPED_SLASHES ), "\n";
} finally {
	WsTestSupport::stop_agent( $agent );
	foreach ( array( "$dir/state" ) as $sub ) {
		foreach ( (array) glob( "$sub/*" ) as $f ) {
			@unlink( (string) $f );
		}
		@rmdir( $sub );
	}
	WsTestSupport::remove_dir( $dir );
}

/**
 * A REST v3 order of the usual size (about 2.5 KB of JSON).
 */
function bench_order( int $id ): array {
	$address = array(
		'first_name' => 'Jane',
		'last_name'  => 'Doe',
		'company'    => '',
		'address_1'  => '969 Market',
		'address_2'  => '',
		'city'       => 'San Francisco',
		'state'      => 'CA',
		'postcode'   => '94103',
		'country'    => 'US',
	);
	$now     = gmdate( 'Y-m-d\TH:i:s' );
	return array(
		'id'                   => $id,
		'parent_id'            => 0,
		'number'               => (string) $id,
		'order_key'            => 'wc_order_' . substr( md5( (string) $id ), 0, 13 ),
		'created_via'          => 'checkout',
		'version'              => '10.0.2',
		'status'               => 'processing',
		'currency'             => 'USD',
		'date_created'         => $now,
		'date_created_gmt'     => $now,
		'date_modified'        => $now,
		'date_modified_gmt'    => $now,
		'discount_total'       => '0.00',
		'discount_tax'         => '0.00',
		'shipping_total'       => '10.00',
		'shipping_tax'         => '0.00',
		'cart_tax'             => '1.35',
		'total'                => '29.35',
		'total_tax'            => '1.35',
		'prices_include_tax'   => false,
		'customer_id'          => 0,
		'customer_ip_address'  => '127.0.0.1',
		'customer_user_agent'  => 'Mozilla/5.0',
		'customer_note'        => '',
		'billing'              => $address + array(
			'email' => "buyer$id@example.com",
			'phone' => '(555) 555-5555',
		),
		'shipping'             => $address,
		'payment_method'       => 'bacs',
		'payment_method_title' => 'Direct Bank Transfer',
		'transaction_id'       => '',
		'date_paid'            => $now,
		'date_paid_gmt'        => $now,
		'date_completed'       => null,
		'date_completed_gmt'   => null,
		'cart_hash'            => md5( (string) $id ),
		'meta_data'            => array(),
		'line_items'           => array(
			array(
				'id'           => $id * 10 + 1,
				'name'         => 'Woo Single #1',
				'product_id'   => 93,
				'variation_id' => 0,
				'quantity'     => 2,
				'tax_class'    => '',
				'subtotal'     => '6.00',
				'subtotal_tax' => '0.45',
				'total'        => '6.00',
				'total_tax'    => '0.45',
				'taxes'        => array(
					array(
						'id'       => 75,
						'total'    => '0.45',
						'subtotal' => '0.45',
					),
				),
				'meta_data'    => array(),
				'sku'          => '',
				'price'        => 3,
			),
			array(
				'id'           => $id * 10 + 2,
				'name'         => 'Ship Your Idea – Color: Black, Size: M Test',
				'product_id'   => 22,
				'variation_id' => 23,
				'quantity'     => 1,
				'tax_class'    => '',
				'subtotal'     => '12.00',
				'subtotal_tax' => '0.90',
				'total'        => '12.00',
				'total_tax'    => '0.90',
				'taxes'        => array(
					array(
						'id'       => 75,
						'total'    => '0.9',
						'subtotal' => '0.9',
					),
				),
				'meta_data'    => array(
					array(
						'id'    => 1,
						'key'   => 'pa_color',
						'value' => 'black',
					),
					array(
						'id'    => 2,
						'key'   => 'size',
						'value' => 'M Test',
					),
				),
				'sku'          => 'Bar3',
				'price'        => 12,
			),
		),
		'tax_lines'            => array(
			array(
				'id'                 => $id * 10 + 3,
				'rate_code'          => 'US-CA-STATE TAX',
				'rate_id'            => 75,
				'label'              => 'State Tax',
				'compound'           => false,
				'tax_total'          => '1.35',
				'shipping_tax_total' => '0.00',
				'meta_data'          => array(),
			),
		),
		'shipping_lines'       => array(
			array(
				'id'           => $id * 10 + 4,
				'method_title' => 'Flat Rate',
				'method_id'    => 'flat_rate',
				'total'        => '10.00',
				'total_tax'    => '0.00',
				'taxes'        => array(),
				'meta_data'    => array(),
			),
		),
		'fee_lines'            => array(),
		'coupon_lines'         => array(),
		'refunds'              => array(),
		'_links'               => array(
			'self'       => array( array( 'href' => "https://example.com/wp-json/wc/v3/orders/$id" ) ),
			'collection' => array( array( 'href' => 'https://example.com/wp-json/wc/v3/orders' ) ),
		),
	);
}

/**
 * The wire measurement.
 */
function bench_wire( array $agent, string $token, int $events, int $batch, string $repo ): array {
	define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' );
	require_once $repo . '/wp-plugin/includes/class-woobrevo-ws-frame.php';
	require_once $repo . '/wp-plugin/includes/class-woobrevo-ws-client.php';
	$epoch  = bin2hex( random_bytes( 4 ) );
	$client = new WooBrevo_Ws_Client();
	$client->connect( sprintf( 'ws://127.0.0.1:%d/v1/stream', $agent['port'] ), $token );
	$client->send_text( WsTestSupport::hello() );
	$client->receive( 10 );

	$bytes    = 0;
	$acked    = 0;
	$build    = 0.0;
	$t0       = microtime( true );
	$batches  = (int) ceil( $events / $batch );
	$latency  = array();
	for ( $b = 0; $b < $batches; $b++ ) {
		$tb    = microtime( true );
		$parts = array();
		for ( $i = 1; $i <= $batch; $i++ ) {
			$id      = $b * $batch + $i;
			$parts[] = json_encode(
				array(
					'id'          => "$epoch-$id",
					'topic'       => 'order.updated',
					'resource'    => 'order',
					'resource_id' => $id,
					'occurred_at' => gmdate( 'Y-m-d\TH:i:s\Z' ),
					'payload'     => bench_order( $id ),
					'extra'       => array(
						'status_from' => 'pending',
						'status_to'   => 'processing',
					),
				),
				JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
			);
		}
		$message = '{"type":"events","batch":"b-' . $b . '","events":[' . implode( ',', $parts ) . ']}';
		$build  += microtime( true ) - $tb;
		$bytes  += strlen( $message );
		$ts      = microtime( true );
		$client->send_text( $message );
		$ack = json_decode( (string) $client->receive( 30 ), true );
		if ( 'ack' !== ( $ack['type'] ?? '' ) ) {
			throw new RuntimeException( 'no ack: ' . json_encode( $ack ) );
		}
		$latency[] = microtime( true ) - $ts;
		$acked    += count( $ack['accepted'] ) + count( $ack['rejected'] );
		if ( count( $ack['rejected'] ) > 0 ) {
			throw new RuntimeException( 'rejected: ' . json_encode( $ack['rejected'][0] ) );
		}
	}
	$elapsed = microtime( true ) - $t0;
	$client->close();
	sort( $latency );
	return array(
		'bench'             => 'plugin_shipper_throughput',
		'mode'              => 'wire',
		'events'            => $acked,
		'batch'             => $batch,
		'seconds'           => round( $elapsed, 3 ),
		'events_per_s'      => (int) round( $acked / $elapsed ),
		'mb_per_s'          => round( $bytes / $elapsed / 1048576, 2 ),
		'avg_event_bytes'   => (int) round( $bytes / max( 1, $acked ) ),
		'ack_p50_ms'        => round( $latency[ (int) ( count( $latency ) * 0.5 ) ] * 1000, 1 ),
		'ack_p95_ms'        => round( $latency[ (int) ( count( $latency ) * 0.95 ) ] * 1000, 1 ),
		'php_encode_share'  => round( $build / $elapsed, 3 ),
		'php'               => PHP_VERSION,
	);
}

/**
 * The shipper measurement, inside WordPress. Defined in bench/plugin_shipper_wp.php.
 */
function bench_shipper( array $agent, string $token, int $events ): array {
	require __DIR__ . '/plugin_shipper_wp.php';
	return bench_shipper_in_wordpress( $agent, $token, $events );
}
