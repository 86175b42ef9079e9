<?php
/**
 * The "shipper" half of bench/plugin_shipper_throughput.php: WooBrevo_Shipper::tick() inside
 * the test WordPress (WOOBREVO_WP_DIR), payloads built through the REST controllers.
 *
 * @package WooBrevo
 */

/**
 * What each variant changes, through the shipper's filters (call once WordPress is loaded).
 *
 * @return array<string, array{depth: int, collection: bool}>
 */
function bench_shipper_variants(): array {
	return array(
	'new'        => array(
		'depth'      => WooBrevo_Shipper::PIPELINE_DEPTH,
		'collection' => true,
	),
	'old'        => array(
		'depth'      => 1,
		'collection' => false,
	),
	'pipeline'   => array(
		'depth'      => WooBrevo_Shipper::PIPELINE_DEPTH,
		'collection' => false,
	),
	'collection' => array(
		'depth'      => 1,
		'collection' => true,
	),
	'depth2'     => array(
		'depth'      => 2,
		'collection' => true,
	),
	);
}

/**
 * CPU seconds (user + system) a process has used so far, with $children those of its live
 * descendants instead (the agent's worker process); null when unreadable.
 *
 * @param int  $pid      Process id.
 * @param bool $children Count the descendants, not the process.
 * @return float|null
 */
function bench_cpu_seconds( int $pid, bool $children = false ): ?float {
	$stat = $pid > 0 ? @file_get_contents( "/proc/$pid/stat" ) : false;
	if ( false === $stat ) {
		return null;
	}
	if ( $children ) {
		$seconds = 0.0;
		foreach ( (array) glob( "/proc/$pid/task/*/children" ) as $file ) {
			foreach ( preg_split( '/\s+/', trim( (string) @file_get_contents( (string) $file ) ) ) as $child ) {
				if ( '' !== $child ) {
					$seconds += (float) bench_cpu_seconds( (int) $child ) + (float) bench_cpu_seconds( (int) $child, true );
				}
			}
		}
		return $seconds;
	}
	// Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
	$fields = explode( ' ', substr( $stat, strrpos( $stat, ')' ) + 2 ) );
	return ( (int) $fields[11] + (int) $fields[12] ) / 100; // USER_HZ is 100 on Linux.
}

/**
 * Seconds a process (all its threads) has spent on a CPU and runnable but waiting for one,
 * from /proc/PID/task/TID/schedstat; what is neither is time blocked (socket reads, MariaDB).
 *
 * @param int $pid Process id.
 * @return array{0: float, 1: float} [running, waiting for a CPU].
 */
function bench_sched_seconds( int $pid ): array {
	$run  = 0.0;
	$wait = 0.0;
	foreach ( (array) glob( "/proc/$pid/task/*/schedstat" ) as $file ) {
		$fields = explode( ' ', trim( (string) @file_get_contents( (string) $file ) ) );
		$run   += (int) ( $fields[0] ?? 0 ) / 1e9;
		$wait  += (int) ( $fields[1] ?? 0 ) / 1e9;
	}
	return array( $run, $wait );
}

/**
 * CPU seconds this PHP process has used so far.
 *
 * @return float
 */
function bench_own_cpu_seconds(): float {
	$usage = getrusage();
	return $usage['ru_utime.tv_sec'] + $usage['ru_utime.tv_usec'] / 1e6 + $usage['ru_stime.tv_sec'] + $usage['ru_stime.tv_usec'] / 1e6;
}

/**
 * Fills the outbox with order.updated rows over a set of orders and times the ticks that drain
 * it, once per variant, each against a fresh agent. Prints one JSON line per variant, then one
 * with the payload-building costs alone.
 *
 * @param int      $events   Rows to ship per variant.
 * @param string[] $variants Keys of bench_shipper_variants().
 * @param string   $peer     agent, or ingest-only (its processor stopped).
 */
function bench_shipper_in_wordpress( int $events, array $variants, string $peer = 'agent' ): void {
	require_once dirname( __DIR__ ) . '/tests/php/wp-env/load.php';
	global $wpdb;
	add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
	WooBrevo_Settings::set( 'payload_user', 1 );
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
	$mysqld = (int) @file_get_contents( dirname( (string) getenv( 'WOOBREVO_WP_DIR' ) ) . '/mysqld.pid' );
	$depth      = 1;
	$collection = true;
	add_filter(
		'woobrevo_ship_pipeline_depth',
		static function () use ( &$depth ) {
			return $depth;
		}
	);
	add_filter(
		'woobrevo_ship_collection_requests',
		static function () use ( &$collection ) {
			return $collection;
		}
	);

	try {
		foreach ( $variants as $variant ) {
			$depth      = bench_shipper_variants()[ $variant ]['depth'];
			$collection = bench_shipper_variants()[ $variant ]['collection'];
			$result = bench_with_agent(
				static function ( array $agent, string $token ) use ( $outbox, $table, $orders, $events, $mysqld ): array {
					global $wpdb;
					WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', $agent['port'] ) );
					WooBrevo_Settings::set( 'token', $token );
					delete_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION );
					delete_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION );
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
					wp_cache_flush(); // Every variant starts with WordPress's object cache cold.

					$agent_pid = (int) ( proc_get_status( $agent['process'] )['pid'] ?? 0 );
					$shipper   = new WooBrevo_Shipper( $outbox, new WooBrevo_Payloads() );
					$totals    = array(
						'acked'   => 0,
						'ticks'   => 0,
						'batches' => 0,
					);
					$cpu0      = array( bench_own_cpu_seconds(), bench_cpu_seconds( $agent_pid ), bench_cpu_seconds( $agent_pid, true ), bench_cpu_seconds( $mysqld ) );
					$sched0    = array( bench_sched_seconds( getmypid() ), bench_sched_seconds( $agent_pid ) );
					$t0        = microtime( true );
					while ( $outbox->depth() > 0 && $totals['ticks'] < 100 ) {
						$stats = $shipper->tick( 60 );
						++$totals['ticks'];
						$totals['acked']   += $stats['acked'];
						$totals['batches'] += $stats['batches'];
						if ( null !== $stats['error'] ) {
							throw new RuntimeException( 'tick failed: ' . $stats['error'] );
						}
					}
					$elapsed = microtime( true ) - $t0;
					$sched1  = array( bench_sched_seconds( getmypid() ), bench_sched_seconds( $agent_pid ) );
					$cpu1    = array( bench_own_cpu_seconds(), bench_cpu_seconds( $agent_pid ), bench_cpu_seconds( $agent_pid, true ), bench_cpu_seconds( $mysqld ) );
					$per     = static function ( int $i ) use ( $cpu0, $cpu1, $totals ): ?float {
						return null === $cpu0[ $i ] || null === $cpu1[ $i ] ? null : round( ( $cpu1[ $i ] - $cpu0[ $i ] ) / max( 1, $totals['acked'] ) * 1000, 3 );
					};
					return array(
						'events'                => $totals['acked'],
						'ticks'                 => $totals['ticks'],
						'batches'               => $totals['batches'],
						'seconds'               => round( $elapsed, 3 ),
						'events_per_s'          => (int) round( $totals['acked'] / $elapsed ),
						'cpu_ms_per_event'      => array(
							'php'          => $per( 0 ),
							'agent'        => $per( 1 ),
							'agent_worker' => $per( 2 ),
							'mariadb'      => $per( 3 ),
						),
						// Shares of the wall time: on a CPU, runnable but waiting for one (a
						// loaded machine), and the rest blocked (acks, MariaDB).
						'php_time_share'        => array(
							'running'      => round( ( $sched1[0][0] - $sched0[0][0] ) / $elapsed, 3 ),
							'cpu_wait'     => round( ( $sched1[0][1] - $sched0[0][1] ) / $elapsed, 3 ),
						),
						'agent_doors_time_share' => array(
							'running'  => round( ( $sched1[1][0] - $sched0[1][0] ) / $elapsed, 3 ),
							'cpu_wait' => round( ( $sched1[1][1] - $sched0[1][1] ) / $elapsed, 3 ),
						),
					);
				},
				$peer
			);
			echo json_encode(
				array(
					'bench'          => 'plugin_shipper_throughput',
					'mode'           => 'shipper',
					'peer'           => $peer,
					'variant'        => $variant,
					'pipeline_depth' => $depth,
					'collection'     => $collection,
				) + $result + array(
					'load_1m'     => sys_getloadavg()[0],
					'woocommerce' => defined( 'WC_VERSION' ) ? WC_VERSION : 'double',
					'php'         => PHP_VERSION,
				),
				JSON_UNESCAPED_SLASHES
			), "\n";
		}

		// Where the PHP time goes: building the payloads alone, warm, per event.
		$payloads = new WooBrevo_Payloads();
		$rows     = array();
		foreach ( $orders as $id ) {
			$rows[] = array(
				'resource'    => 'order',
				'resource_id' => $id,
				'topic'       => 'order.updated',
				'extra'       => array(),
			);
		}
		// Rounds alternate between the two ways, so that a busy moment of the machine hits both.
		$single = 0.0;
		$many   = 0.0;
		for ( $r = 0; $r < 10; $r++ ) {
			$tb = microtime( true );
			foreach ( $rows as $row ) {
				$payloads->build( $row, array() );
			}
			$single += microtime( true ) - $tb;
			$tb      = microtime( true );
			$bodies  = $payloads->build_many( $rows, array() );
			$many   += microtime( true ) - $tb;
		}
		$single = $single / ( 10 * count( $rows ) ) * 1000;
		$many   = $many / ( 10 * count( $rows ) ) * 1000;
		$tb = microtime( true );
		for ( $r = 0; $r < 10; $r++ ) {
			foreach ( $bodies as $body ) {
				wp_json_encode( $body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE );
			}
		}
		$encode = ( microtime( true ) - $tb ) / ( 10 * count( $rows ) ) * 1000;
		echo json_encode(
			array(
				'bench'                    => 'plugin_shipper_throughput',
				'mode'                     => 'payload_build',
				'single_request_ms'        => round( $single, 3 ),
				'collection_request_ms'    => round( $many, 3 ),
				'json_encode_ms'           => round( $encode, 4 ),
				'woocommerce'              => defined( 'WC_VERSION' ) ? WC_VERSION : 'double',
			),
			JSON_UNESCAPED_SLASHES
		), "\n";
	} finally {
		foreach ( $orders as $id ) {
			wc_get_order( $id )->delete( true );
		}
		$wpdb->query( "DELETE FROM {$table}" ); // phpcs:ignore -- no input.
		WooBrevo_Settings::set( 'agent_url', '' );
		WooBrevo_Settings::set( 'token', '' );
	}
}
