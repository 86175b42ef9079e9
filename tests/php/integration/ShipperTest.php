<?php
/**
 * WooBrevo_Shipper inside real WordPress on MariaDB, against the agent's real websocket server:
 * acked rows deleted, heartbeat with an empty outbox, watch_meta cached, rejected events
 * recorded, agent down (rows wait, backoff recorded and honoured), token refused, the time
 * budget, and two shipper processes at once (each row sent once).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

require_once dirname( __DIR__ ) . '/unit/WsTestSupport.php';

final class ShipperTest extends TestCase {

	private const TOKEN = 'shipper-test-token_0123456789abcdefghijklmnopqrstuvwxyzABCD';

	/** @var array<string, mixed> */
	private static array $agent;

	private static string $dir;

	public static function setUpBeforeClass(): void {
		self::$dir   = WsTestSupport::temp_dir();
		self::$agent = WsTestSupport::start_agent(
			self::$dir,
			array(),
			array(
				array(
					'id'    => 'default',
					'token' => self::TOKEN,
				),
			),
			array(
				'connectors' => array(
					'woocommerce' => array(
						'customer_mapping' => array(
							'email'                    => 'email',
							'first_name'               => 'FIRSTNAME',
							'meta_data.loyalty_points' => 'LOYALTY_POINTS',
						),
					),
				),
			)
		);
	}

	public static function tearDownAfterClass(): void {
		WsTestSupport::stop_agent( self::$agent );
		WsTestSupport::remove_dir( self::$dir . '/state' );
		WsTestSupport::remove_dir( self::$dir );
	}

	protected function setUp(): void {
		global $wpdb;
		if ( ! WooBrevo_Schema::is_installed() ) {
			WooBrevo_Schema::install();
		}
		$wpdb->query( 'DELETE FROM ' . WooBrevo_Schema::table() ); // phpcs:ignore -- test cleanup, no input.
		WooBrevo_Outbox::reset_request();
		foreach ( array( WooBrevo_Shipper::BACKOFF_STEP_OPTION, WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 'woobrevo_rejected', 'woobrevo_last_error', 'woobrevo_watch_meta', 'woobrevo_connected', 'woobrevo_last_ack' ) as $option ) {
			delete_option( $option );
		}
		WooBrevo_Settings::set( 'agent_url', $this->agent_url() );
		WooBrevo_Settings::set( 'token', self::TOKEN );
	}

	private function agent_url(): string {
		return sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$agent['port'] );
	}

	/**
	 * Adds deleted-customer rows (their payload needs no WooCommerce object); returns ids.
	 */
	private function add_rows( int $count, int $first = 1000 ): void {
		$outbox = new WooBrevo_Outbox();
		for ( $i = 0; $i < $count; $i++ ) {
			$outbox->add( 'customer', $first + $i, 'deleted' );
		}
		WooBrevo_Outbox::reset_request();
	}

	private function shipper(): WooBrevo_Shipper {
		return new WooBrevo_Shipper( new WooBrevo_Outbox(), new WooBrevo_Payloads() );
	}

	private function metric( string $name ): int {
		$text = (string) @file_get_contents( sprintf( 'http://127.0.0.1:%d/metrics', self::$agent['http_port'] ) );
		$sum  = 0;
		foreach ( explode( "\n", $text ) as $line ) {
			if ( preg_match( '/^' . preg_quote( $name, '/' ) . '(\{[^}]*\})?\s+([0-9.e+]+)$/', $line, $m ) && ( '' === $m[1] || str_contains( $m[1], 'site="default"' ) ) ) {
				$sum += (int) $m[2];
			}
		}
		return $sum;
	}

	public function test_ships_batches_and_deletes_acked_rows(): void {
		$this->add_rows( 250 );
		$outbox = new WooBrevo_Outbox();
		$this->assertSame( 250, $outbox->depth() );
		$before = $this->metric( 'woobrevo_events_in_total' );
		$stats  = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$this->assertSame( 250, $stats['sent'] );
		$this->assertSame( 250, $stats['acked'] );
		$this->assertSame( 3, $stats['batches'], 'max_batch 100 from the welcome' );
		$this->assertSame( 0, $outbox->depth() );
		$this->assertSame( 250, $this->metric( 'woobrevo_events_in_total' ) - $before );
		$this->assertGreaterThan( 0, (int) WooBrevo_Settings::get( 'last_ack' ) );
		$this->assertGreaterThan( 0, (int) WooBrevo_Settings::get( 'connected' ) );
	}

	public function test_heartbeat_with_nothing_to_ship_caches_watch_meta(): void {
		$stats = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$this->assertNull( $stats['skipped'] );
		$this->assertSame( 0, $stats['sent'] );
		$this->assertGreaterThan( 0, (int) WooBrevo_Settings::get( 'connected' ) );
		$watch = WooBrevo_Settings::get( 'watch_meta' );
		$this->assertContains( 'loyalty_points', $watch['customer'] ?? array() );
		$status = json_decode( (string) file_get_contents( sprintf( 'http://127.0.0.1:%d/status', self::$agent['http_port'] ) ), true );
		$this->assertIsArray( $status );
		$this->assertStringContainsString( '"default"', (string) json_encode( $status ) );
	}

	public function test_rejected_events_are_recorded_and_their_rows_deleted(): void {
		global $wpdb;
		$this->add_rows( 2 );
		// A row no agent accepts: an unknown resource (written directly; capture never does this).
		$wpdb->insert(
			WooBrevo_Schema::table(),
			array(
				'resource'    => 'subscription',
				'resource_id' => 7,
				'topic'       => 'subscription.deleted',
				'occurred_at' => gmdate( 'Y-m-d H:i:s' ),
			)
		);
		$stats = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$this->assertSame( 3, $stats['sent'] );
		$this->assertSame( 2, $stats['acked'] );
		$this->assertSame( 1, $stats['rejected'] );
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
		$rejected = ( new WooBrevo_Outbox() )->rejected();
		$this->assertCount( 1, $rejected );
		$this->assertSame( 'subscription', $rejected[0]['resource'] );
		$this->assertNotSame( '', $rejected[0]['code'] );
		$this->assertNotSame( '', $rejected[0]['message'] );
	}

	public function test_agent_down_rows_wait_and_backoff_is_recorded(): void {
		$this->add_rows( 20 );
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', WsTestSupport::free_port() ) );
		$t0    = microtime( true );
		$stats = $this->shipper()->tick();
		$this->assertLessThan( 2.0, microtime( true ) - $t0, 'a dead agent costs little' );
		$this->assertNotNull( $stats['error'] );
		$this->assertSame( 20, ( new WooBrevo_Outbox() )->depth() );
		$backoff = $this->shipper()->backoff();
		$this->assertSame( 1, $backoff['failures'] );
		$this->assertGreaterThanOrEqual( time(), $backoff['until'] );
		$this->assertSame( 0, (int) WooBrevo_Settings::get( 'connected' ) );
		$this->assertStringContainsString( 'cannot connect', (string) WooBrevo_Settings::get( 'last_error' ) );

		// The next tick inside the backoff does not even try.
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() + 30 );
		$skipped = $this->shipper()->tick();
		$this->assertStringContainsString( 'backing off', (string) $skipped['skipped'] );
		$this->assertSame( 0, $skipped['sent'] );

		// A second failure doubles the step.
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() - 1 );
		$this->shipper()->tick();
		$this->assertSame( 2, $this->shipper()->backoff()['failures'] );

		// Agent back (the URL fixed), backoff over: everything goes, the backoff is cleared.
		WooBrevo_Settings::set( 'agent_url', $this->agent_url() );
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() - 1 );
		$stats = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$this->assertSame( 20, $stats['acked'] );
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
		$this->assertSame( 0, $this->shipper()->backoff()['failures'] );
		$this->assertSame( '', (string) WooBrevo_Settings::get( 'last_error' ) );
	}

	public function test_backoff_delays_grow_jittered_to_five_minutes(): void {
		$this->assertSame( 1, WooBrevo_Shipper::backoff_delay( 1, 1.0 ) );
		$this->assertSame( 4, WooBrevo_Shipper::backoff_delay( 3, 1.0 ) );
		$this->assertSame( 2, WooBrevo_Shipper::backoff_delay( 3, 0.0 ) );
		$this->assertSame( 300, WooBrevo_Shipper::backoff_delay( 12, 1.0 ) );
		$this->assertSame( 150, WooBrevo_Shipper::backoff_delay( 50, 0.0 ) );
	}

	public function test_token_refused_backs_off_to_the_maximum(): void {
		$this->add_rows( 3 );
		$bad = 'refused-token_' . bin2hex( random_bytes( 16 ) );
		WooBrevo_Settings::set( 'token', $bad );
		$stats = $this->shipper()->tick();
		$this->assertStringContainsString( 'token refused', (string) $stats['error'] );
		$this->assertStringNotContainsString( $bad, (string) WooBrevo_Settings::get( 'last_error' ) );
		$this->assertGreaterThanOrEqual( time() + WooBrevo_Shipper::MAX_BACKOFF - 2, $this->shipper()->backoff()['until'], (string) json_encode( $stats ) );
		$this->assertSame( 3, ( new WooBrevo_Outbox() )->depth() );
	}

	public function test_time_budget_bounds_a_tick(): void {
		$this->add_rows( 3000 );
		$t0    = microtime( true );
		$stats = $this->shipper()->tick( 1 );
		$this->assertNull( $stats['error'] );
		// No new batch starts after the budget; the one in flight finishes (its ack).
		$this->assertLessThan( 4.0, microtime( true ) - $t0 );
		$this->assertGreaterThan( 0, $stats['acked'] );
		$left = ( new WooBrevo_Outbox() )->depth();
		$this->assertSame( 3000 - $stats['acked'], $left );
		// Nothing stays claimed: the next tick picks the rest up at once.
		global $wpdb;
		$this->assertSame( '0', (string) $wpdb->get_var( 'SELECT COUNT(*) FROM ' . WooBrevo_Schema::table() . ' WHERE claimed_by IS NOT NULL' ) ); // phpcs:ignore -- no input.
	}

	public function test_two_shippers_at_once_send_each_row_once(): void {
		$this->add_rows( 1500, 5000 );
		$before   = $this->metric( 'woobrevo_events_in_total' );
		$replayed = $this->metric( 'woobrevo_events_replayed_total' );
		$procs    = array();
		for ( $i = 0; $i < 2; $i++ ) {
			$procs[] = proc_open(
				array( PHP_BINARY, __DIR__ . '/shipper_worker.php' ),
				array( 1 => array( 'pipe', 'w' ), 2 => array( 'pipe', 'w' ) ),
				$pipes[ $i ],
				null,
				array_merge( getenv(), array( 'WOOBREVO_WP_DIR' => getenv( 'WOOBREVO_WP_DIR' ) ) )
			);
		}
		$results = array();
		foreach ( $procs as $i => $proc ) {
			$out = stream_get_contents( $pipes[ $i ][1] );
			$err = stream_get_contents( $pipes[ $i ][2] );
			proc_close( $proc );
			$result = json_decode( trim( (string) $out ), true );
			$this->assertIsArray( $result, "worker $i: $out $err" );
			$results[] = $result;
		}
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
		$this->assertSame( 1500, $results[0]['sent'] + $results[1]['sent'], 'each row sent exactly once: ' . json_encode( $results ) );
		$this->assertSame( 1500, $this->metric( 'woobrevo_events_in_total' ) - $before );
		$this->assertSame( $replayed, $this->metric( 'woobrevo_events_replayed_total' ) );
		$this->assertGreaterThan( 0, $results[0]['locked'] + $results[1]['locked'], 'the two ran at the same time' );
	}

	public function test_lost_claims_expire_and_are_resent(): void {
		$this->add_rows( 5 );
		// A shipper that died holding claims: its lease runs out, then another sends the rows.
		$outbox = new WooBrevo_Outbox();
		$this->assertCount( 5, $outbox->claim( 'dead-shipper', 100, 1 ) );
		$this->assertSame( 0, $this->shipper()->tick()['sent'] );
		sleep( 2 );
		$this->assertSame( 5, $this->shipper()->tick()['acked'] );
		$this->assertSame( 0, $outbox->depth() );
	}

	public function test_not_configured_is_skipped(): void {
		WooBrevo_Settings::set( 'token', '' );
		$stats = $this->shipper()->tick();
		$this->assertSame( 'agent URL or site token not set', $stats['skipped'] );
	}

	public function test_stream_keeps_one_connection_and_ships_new_rows(): void {
		$proc = proc_open(
			array( PHP_BINARY, __DIR__ . '/shipper_worker.php', 'stream', '6' ),
			array( 1 => array( 'pipe', 'w' ), 2 => array( 'pipe', 'w' ) ),
			$pipes
		);
		$this->assertSame( "streaming\n", fgets( $pipes[1] ) );
		// Wait until the stream is connected (it holds the site lock; a tick is then skipped).
		$deadline = microtime( true ) + 5;
		do {
			usleep( 100000 );
			$stats = $this->shipper()->tick();
		} while ( null === $stats['skipped'] && microtime( true ) < $deadline );
		$this->assertSame( 'another shipper is running for this site', $stats['skipped'] );
		$this->add_rows( 40, 9000 );
		$deadline = microtime( true ) + 4;
		while ( ( new WooBrevo_Outbox() )->depth() > 0 && microtime( true ) < $deadline ) {
			usleep( 100000 );
		}
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth(), 'rows written while streaming were shipped' );
		$out = stream_get_contents( $pipes[1] );
		$err = stream_get_contents( $pipes[2] );
		$this->assertSame( 0, proc_close( $proc ), $err );
		$this->assertSame( array( 'depth' => 0 ), json_decode( trim( (string) $out ), true ) );
	}
}
