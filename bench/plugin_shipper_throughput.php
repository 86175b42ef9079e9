<?php
/**
 * Shipper throughput, PHP → agent (goal ≥ 1,000 events/s). Two measurements:
 *
 *   wire     The plugin's websocket client sends `events` batches of REST-order-sized events
 *            (about 2.5 KB each) to the real agent (`python -m agent.cli run`, Brevo dry-run)
 *            and reads the acks, up to --pipeline batches in flight (default 1). This is the
 *            PHP → agent path without WordPress: framing, masking, the agent's commit.
 *   shipper  The whole WooBrevo_Shipper::tick() inside the WordPress that tests/php/run.sh
 *            installed (WOOBREVO_WP_DIR): claim rows from the outbox table on MariaDB, build the
 *            payloads through WooCommerce's REST controllers (the test double's here), send,
 *            wait for acks, delete rows. One line per variant (--variants, default new,old):
 *              new         as shipped: 4 batches in flight, one collection request per batch
 *              old         the previous path: 1 batch in flight, one REST request per event
 *              pipeline    4 in flight, one request per event
 *              collection  1 in flight, one collection request per batch
 *              depth2      2 in flight, one collection request per batch
 *            Each variant gets a fresh agent (its processor would otherwise still be working
 *            through the previous variant's events) and reports the CPU milliseconds per event
 *            of PHP, the agent's doors process, its worker process and MariaDB over its run.
 *            --peer ingest-only ships to the agent's doors and store with its processor stopped
 *            (bench/streamkit.py serve, as bench/stream_throughput.py --ingest-only): the
 *            shipper with an agent that only stores.
 *
 * Usage:
 *   php bench/plugin_shipper_throughput.php [--events 20000] [--batch 100] [--pipeline 1]        (wire)
 *   WOOBREVO_WP_DIR=… php bench/plugin_shipper_throughput.php --shipper [--events 3000] [--variants new,old] [--peer agent|ingest-only]
 * bench/plugin_run.sh runs both (and bench/plugin_order_save.php), setting up WordPress with tests/php/run.sh.
 * Prints one JSON line per measurement.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

$opts     = getopt( '', array( 'events:', 'batch:', 'pipeline:', 'shipper', 'variants:', 'peer:' ) );
$batch    = (int) ( $opts['batch'] ?? 100 );
$pipeline = max( 1, (int) ( $opts['pipeline'] ?? 1 ) );
$repo     = dirname( __DIR__ );

require_once $repo . '/tests/php/unit/WsTestSupport.php';

if ( isset( $opts['shipper'] ) ) {
	require __DIR__ . '/plugin_shipper_wp.php';
	bench_shipper_in_wordpress( (int) ( $opts['events'] ?? 3000 ), explode( ',', (string) ( $opts['variants'] ?? 'new,old' ) ), (string) ( $opts['peer'] ?? 'agent' ) );
} else {
	$events = (int) ( $opts['events'] ?? 20000 );
	$result = bench_with_agent(
		static function ( array $agent, string $token ) use ( $events, $batch, $pipeline, $repo ): array {
			return bench_wire( $agent, $token, $events, $batch, $pipeline, $repo );
		}
	);
	echo json_encode( $result, JSON_UNESCAPED_SLASHES ), "\n";
}

/**
 * Runs $fn with a fresh agent (own config, token and state; Brevo dry-run), stopped afterwards.
 * WOOBREVO_BENCH_STATE_DIR puts its state under that folder instead (e.g. on tmpfs). $peer
 * `ingest-only`: the agent's App with its processor stopped (bench/streamkit.py serve).
 *
 * @param callable(array, string): array $fn   Gets the agent (process, port) and its site token.
 * @param string                         $peer agent or ingest-only.
 * @return array What $fn returned.
 */
function bench_with_agent( callable $fn, string $peer = 'agent' ): array {
	if ( ! in_array( $peer, array( 'agent', 'ingest-only' ), true ) ) {
		throw new InvalidArgumentException( "--peer $peer: agent or ingest-only" );
	}
	$token = 'bench-token-' . bin2hex( random_bytes( 24 ) );
	$dir   = WsTestSupport::temp_dir();
	$state = getenv( 'WOOBREVO_BENCH_STATE_DIR' ) ? getenv( 'WOOBREVO_BENCH_STATE_DIR' ) . '/' . basename( $dir ) : "$dir/state";
	$agent = WsTestSupport::start_agent(
		$dir,
		array(
			'log_level'  => 'warning',
			'state_dir'  => $state,
			'processing' => 'ingest-only' === $peer ? 'inline' : 'process',
		),
		array(
			array(
				'id'    => 'default',
				'token' => $token,
			),
		)
	);
	if ( 'ingest-only' === $peer ) {
		// The same config, served by the App with its processor closed.
		WsTestSupport::stop_agent( $agent );
		$cmd              = array( WsTestSupport::python(), __DIR__ . '/streamkit.py', 'serve', "$dir/agent.yaml" );
		$agent['process'] = proc_open( $cmd, array( 0 => array( 'file', '/dev/null', 'r' ), 1 => array( 'file', $agent['log'], 'a' ), 2 => array( 'file', $agent['log'], 'a' ) ), $pipes, dirname( __DIR__ ) );
		$deadline         = microtime( true ) + 30;
		while ( false === ( $probe = @stream_socket_client( 'tcp://127.0.0.1:' . $agent['port'], $errno, $errstr, 0.2 ) ) ) {
			if ( microtime( true ) > $deadline || ! proc_get_status( $agent['process'] )['running'] ) {
				throw new RuntimeException( "the ingest-only agent did not start:\n" . (string) @file_get_contents( $agent['log'] ) );
			}
			usleep( 50000 );
		}
		fclose( $probe );
	}
	try {
		return $fn( $agent, $token );
	} finally {
		WsTestSupport::stop_agent( $agent );
		WsTestSupport::remove_dir( $state );
		WsTestSupport::remove_dir( $dir );
	}
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
 * The wire measurement: up to $pipeline batches in flight, acks read in order.
 */
function bench_wire( array $agent, string $token, int $events, int $batch, int $pipeline, string $repo ): array {
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
	$sent_at  = array(); // Batch id => send time, oldest first.
	$wait_ack = static function () use ( $client, &$sent_at, &$latency, &$acked ): void {
		$ack = json_decode( (string) $client->receive( 30 ), true );
		if ( 'ack' !== ( $ack['type'] ?? '' ) || array_key_first( $sent_at ) !== $ack['batch'] ) {
			throw new RuntimeException( 'no ack, or out of order: ' . json_encode( $ack ) );
		}
		$latency[] = microtime( true ) - $sent_at[ $ack['batch'] ];
		unset( $sent_at[ $ack['batch'] ] );
		$acked += count( $ack['accepted'] ) + count( $ack['rejected'] );
		if ( count( $ack['rejected'] ) > 0 ) {
			throw new RuntimeException( 'rejected: ' . json_encode( $ack['rejected'][0] ) );
		}
	};
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
		if ( count( $sent_at ) >= $pipeline ) {
			$wait_ack();
		}
		$sent_at[ 'b-' . $b ] = microtime( true );
		$client->send_text( $message );
	}
	while ( array() !== $sent_at ) {
		$wait_ack();
	}
	$elapsed = microtime( true ) - $t0;
	$client->close();
	sort( $latency );
	return array(
		'bench'             => 'plugin_shipper_throughput',
		'mode'              => 'wire',
		'events'            => $acked,
		'batch'             => $batch,
		'pipeline'          => $pipeline,
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
