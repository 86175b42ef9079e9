<?php
/**
 * WooBrevo_Shipper inside real WordPress on MariaDB, against the agent's real websocket server:
 * acked rows deleted, heartbeat with an empty outbox, watch_meta cached, rejected events
 * recorded, agent down (rows wait, backoff recorded and honoured), token refused, the time
 * budget, and two shipper processes at once (each row sent once). Pipelining (several batches
 * in flight, acks of several batches at once, a close mid-pipeline) against agents of their
 * own with the agent's test-only faults (agent/cli/main.py): acks held after the commit
 * (WOOBREVO_TEST_ACK_DELAY), a batch that fails to store (WOOBREVO_TEST_FAIL_STORE_BATCH).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

require_once dirname( __DIR__ ) . '/unit/WsTestSupport.php';

final class ShipperTest extends TestCase {

	private const TOKEN = 'shipper-test-token_0123456789abcdefghijklmnopqrstuvwxyzABCD';

	/** Seconds the slow agent holds each ack after its commit. */
	private const ACK_DELAY = 0.5;

	/** @var array<string, mixed> */
	private static array $agent;

	/** @var array<string, mixed>|null The slow agent (slow_agent()), started on first use. */
	private static ?array $slow = null;

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
		if ( null !== self::$slow ) {
			WsTestSupport::stop_agent( self::$slow );
			WsTestSupport::remove_dir( self::$slow['dir'] . '/state' );
			WsTestSupport::remove_dir( self::$slow['dir'] );
			self::$slow = null;
		}
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
		$this->assertSame( 604800, WooBrevo_Settings::get( 'cart_link_lifetime' ), "the welcome's carts field (or its default) is stored" );
		$this->assertSame( 'implied', WooBrevo_Settings::get( 'consent_mode' ), "the welcome's consent mode (the agent's default) is stored" );
		$status = json_decode( (string) file_get_contents( sprintf( 'http://127.0.0.1:%d/status', self::$agent['http_port'] ) ), true );
		$this->assertIsArray( $status );
		$this->assertStringContainsString( '"default"', (string) json_encode( $status ) );
	}

	public function test_heartbeat_keeps_the_agents_cart_figures_with_the_time_received(): void {
		delete_option( WooBrevo_Options::CART_FIGURES );
		$this->assertSame( array(), WooBrevo_Settings::get( 'cart_figures' ) );
		$t0    = time();
		$stats = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$stored = WooBrevo_Settings::get( 'cart_figures' );
		$this->assertSame(
			array(
				'active'            => 0,
				'abandoned'         => 0,
				'recovered'         => 0,
				'expired'           => 0,
				'recovered_revenue' => 0.0,
				'recovery_rate'     => null,
			),
			$stored['figures'],
			"the agent's figures of a site without carts yet"
		);
		$this->assertGreaterThanOrEqual( $t0, $stored['at'] );
		$this->assertLessThanOrEqual( time(), $stored['at'] );
		global $wpdb;
		$autoload = $wpdb->get_var( $wpdb->prepare( "SELECT autoload FROM {$wpdb->options} WHERE option_name = %s", WooBrevo_Options::CART_FIGURES ) ); // phpcs:ignore -- test: the stored row itself.
		$this->assertContains( $autoload, array( 'no', 'off' ), 'read by the settings screen only: not autoloaded' );
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
		$start_at = sprintf( '%.3f', microtime( true ) + 4 ); // after both have loaded WordPress.
		for ( $i = 0; $i < 2; $i++ ) {
			$procs[] = proc_open(
				array( PHP_BINARY, __DIR__ . '/shipper_worker.php' ),
				array( 1 => array( 'pipe', 'w' ), 2 => array( 'pipe', 'w' ) ),
				$pipes[ $i ],
				null,
				array_merge(
					getenv(),
					array(
						'WOOBREVO_WP_DIR'   => getenv( 'WOOBREVO_WP_DIR' ),
						'WOOBREVO_START_AT' => $start_at,
					)
				)
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

	/**
	 * Starts an agent of the test's own (welcome.max_batch 5) with some of its test-only faults
	 * (WOOBREVO_TEST_*, agent/cli/main.py) and points the shipper at it. Stop it with stop_own().
	 *
	 * @param array<string, string> $faults Environment variables.
	 * @return array<string, mixed> From WsTestSupport::start_agent().
	 */
	private function own_agent( array $faults, ?string $dir = null ): array {
		$agent = WsTestSupport::start_agent(
			$dir ?? WsTestSupport::temp_dir(),
			array( 'stream' => array( 'max_batch' => 5 ) ),
			array(
				array(
					'id'    => 'default',
					'token' => self::TOKEN,
				),
			),
			array(),
			$faults
		);
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', $agent['port'] ) );
		return $agent;
	}

	/**
	 * Stops an agent of own_agent(); $keep_state keeps its folder for the next one.
	 *
	 * @param array<string, mixed> $agent From own_agent().
	 */
	private function stop_own( array $agent, bool $keep_state = false ): void {
		WsTestSupport::stop_agent( $agent );
		if ( ! $keep_state ) {
			WsTestSupport::remove_dir( $agent['dir'] . '/state' );
			WsTestSupport::remove_dir( $agent['dir'] );
		}
	}

	/**
	 * The agent that acks each batch 0.5 s after its commit (WOOBREVO_TEST_ACK_DELAY), shared by
	 * the pipelining tests: batches stay in flight long enough to count them.
	 *
	 * @return array<string, mixed> From WsTestSupport::start_agent().
	 */
	private function slow_agent(): array {
		if ( ! isset( self::$slow ) ) {
			self::$slow = $this->own_agent( array( 'WOOBREVO_TEST_ACK_DELAY' => (string) self::ACK_DELAY ) );
		}
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$slow['port'] ) );
		return self::$slow;
	}

	/**
	 * The most batches in flight at once (received, not yet acked) the agent saw on the site's
	 * latest connection that sent events (/status `batches_in_flight_max`).
	 *
	 * @param array<string, mixed> $agent From WsTestSupport::start_agent().
	 */
	private function most_in_flight( array $agent ): int {
		return (int) WsTestSupport::agent_status( $agent )['sites']['default']['batches_in_flight_max'];
	}

	/**
	 * The event ids the outbox's rows are shipped under, oldest first.
	 *
	 * @return string[]
	 */
	private function outbox_event_ids(): array {
		global $wpdb;
		$epoch = ( new WooBrevo_Outbox() )->epoch();
		$ids   = $wpdb->get_col( 'SELECT id FROM ' . WooBrevo_Schema::table() . ' ORDER BY id' ); // phpcs:ignore -- no input.
		return array_map(
			static function ( $id ) use ( $epoch ): string {
				return $epoch . '-' . $id;
			},
			$ids
		);
	}

	/**
	 * The agent's inbox of the default site, its event ids only.
	 *
	 * @param array<string, mixed> $agent From WsTestSupport::start_agent().
	 * @return string[]
	 */
	private function inbox_ids( array $agent ): array {
		return array_column( WsTestSupport::agent_inbox( $agent ), 'event_id' );
	}

	private function claimed_rows(): int {
		global $wpdb;
		return (int) $wpdb->get_var( 'SELECT COUNT(*) FROM ' . WooBrevo_Schema::table() . ' WHERE claimed_by IS NOT NULL' ); // phpcs:ignore -- no input.
	}

	public function test_pipelines_batches_within_max_batch(): void {
		$this->add_rows( 23 );
		$ids   = $this->outbox_event_ids();
		$agent = $this->slow_agent();
		$stats = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$this->assertSame( 23, $stats['acked'] );
		// The agent refuses a batch over welcome.max_batch (5 here) with batch_too_large.
		$this->assertSame( 5, $stats['batches'], 'welcome.max_batch 5 respected' );
		$most = $this->most_in_flight( $agent );
		$this->assertLessThanOrEqual( WooBrevo_Shipper::PIPELINE_DEPTH, $most );
		$this->assertGreaterThan( 1, $most, 'batches sent before the earlier ones were acked' );
		$this->assertSame( $ids, array_slice( $this->inbox_ids( $agent ), -23 ), 'each row stored once, in order' );
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
	}

	public function test_pipeline_depth_filter_of_one_waits_for_each_ack(): void {
		$this->add_rows( 12 );
		$agent = $this->slow_agent();
		$depth = static function (): int {
			return 1;
		};
		add_filter( 'woobrevo_ship_pipeline_depth', $depth );
		try {
			$stats = $this->shipper()->tick();
		} finally {
			remove_filter( 'woobrevo_ship_pipeline_depth', $depth );
		}
		$this->assertNull( $stats['error'] );
		$this->assertSame( 12, $stats['acked'] );
		$this->assertSame( 3, $stats['batches'] );
		$this->assertSame( 1, $this->most_in_flight( $agent ) );
	}

	public function test_acks_of_several_batches_at_once(): void {
		// The agent holds each ack 0.5 s after its commit: the acks of the batches in flight
		// arrive together, and the shipper takes the ones after the oldest as they come
		// (already read) instead of waiting again. 8 batches: 2 rounds of 0.5 s when
		// pipelined, at least 8 x 0.5 s when each ack is awaited before the next batch.
		$this->add_rows( 40 );
		$agent = $this->slow_agent();
		$t0    = microtime( true );
		$stats = $this->shipper()->tick();
		$took  = microtime( true ) - $t0;
		$this->assertNull( $stats['error'] );
		$this->assertSame( 40, $stats['sent'] );
		$this->assertSame( 40, $stats['acked'] );
		$this->assertSame( 8, $stats['batches'] );
		$this->assertGreaterThanOrEqual( 3, $this->most_in_flight( $agent ) );
		$this->assertGreaterThanOrEqual( 2 * self::ACK_DELAY, $took );
		$this->assertLessThan( 5 * self::ACK_DELAY, $took, 'acks of several batches handled without a wait each' );
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
	}

	public function test_agent_closing_mid_pipeline_keeps_the_unacked_rows(): void {
		$this->add_rows( 30 );
		$ids = $this->outbox_event_ids();
		// The second batch fails to store: the agent acks the first, closes 1011 "store failed;
		// resend later". Acks held 0.3 s, so the batches after it are in flight by then (some
		// may be stored, none is acked).
		$agent = $this->own_agent(
			array(
				'WOOBREVO_TEST_FAIL_STORE_BATCH' => '2',
				'WOOBREVO_TEST_ACK_DELAY'        => '0.3',
			)
		);
		try {
			$stats  = $this->shipper()->tick();
			$stored = $this->inbox_ids( $agent );
			$most   = $this->most_in_flight( $agent );
			$this->stop_own( $agent, true );
			$this->assertStringContainsString( '1011', (string) $stats['error'] );
			$this->assertStringContainsString( 'store failed; resend later', (string) $stats['error'] );
			$this->assertSame( 5, $stats['acked'], 'only the first batch was acked' );
			$this->assertGreaterThanOrEqual( 15, $stats['sent'] );
			$this->assertGreaterThan( 2, $most, 'the close came mid-pipeline' );
			$this->assertSame( array_slice( $ids, 0, 5 ), array_slice( $stored, 0, 5 ) );
			$this->assertSame( array(), array_intersect( array_slice( $ids, 5, 5 ), $stored ), 'nothing of the failed batch stored' );
			$this->assertSame( 25, ( new WooBrevo_Outbox() )->depth(), 'the acked batch deleted, the unacked ones kept' );
			$this->assertSame( array_slice( $ids, 5 ), $this->outbox_event_ids() );
			$this->assertSame( 0, $this->claimed_rows(), 'and released for the next tick' );
			$this->assertSame( 1, $this->shipper()->backoff()['failures'] );

			// A normal agent on the same store takes the rest: each row sent once more, the ones
			// already stored but not acked are replays; nothing lost, nothing twice.
			$agent = $this->own_agent( array(), $agent['dir'] );
			update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() - 1 );
			$stats = $this->shipper()->tick();
			$inbox = $this->inbox_ids( $agent );
			$this->assertNull( $stats['error'] );
			$this->assertSame( 25, $stats['sent'] );
			$this->assertSame( 25, $stats['acked'] );
			$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
			sort( $ids );
			sort( $inbox );
			$this->assertSame( $ids, $inbox, 'every row stored once' );
		} finally {
			$this->stop_own( $agent );
		}
	}

	public function test_vanished_and_deleted_objects_in_one_batch(): void {
		global $wpdb;
		$order = wc_create_order();
		$order->set_billing_email( 'kept@example.com' );
		$order->save();
		$gone = wc_create_order();
		$gone->save();
		$gone_id = $gone->get_id();
		$wpdb->query( 'DELETE FROM ' . WooBrevo_Schema::table() ); // phpcs:ignore -- test setup, no input.
		WooBrevo_Outbox::reset_request();
		$outbox = new WooBrevo_Outbox();
		$outbox->add( 'order', $order->get_id(), 'updated' );
		$outbox->add( 'order', $gone_id, 'updated' );
		$outbox->add( 'order', 424242, 'deleted' );
		WooBrevo_Outbox::reset_request();
		// The object goes between capture and ship without a hook firing (a direct SQL delete).
		$wpdb->delete( $wpdb->posts, array( 'ID' => $gone_id ) );
		if ( WooBrevo_Capture::hpos_enabled() && $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->prefix . 'wc_orders' ) ) ) {
			// Real HPOS keeps the order in its own table (the post is only a placeholder; the double has no table).
			$wpdb->delete( $wpdb->prefix . 'wc_orders', array( 'id' => $gone_id ) );
		}
		clean_post_cache( $gone_id );
		wp_cache_flush(); // Real WooCommerce also caches orders in the object cache.
		$ids   = $this->outbox_event_ids();
		$stats = $this->shipper()->tick();
		$this->assertNull( $stats['error'] );
		$this->assertSame( 3, $stats['acked'] );
		$this->assertSame( 1, $stats['batches'] );
		$events = array_slice( WsTestSupport::agent_inbox( self::$agent ), -3 );
		$this->assertSame( $ids, array_column( $events, 'event_id' ), 'stored by the agent' );
		$this->assertSame( 'order.updated', $events[0]['topic'] );
		$this->assertSame( $order->get_id(), $events[0]['payload']['id'] );
		$this->assertGreaterThan( 2, count( $events[0]['payload'] ), 'the REST order' );
		$this->assertSame( array( 'order.deleted', array( 'id' => $gone_id ) ), array( $events[1]['topic'], $events[1]['payload'] ), 'vanished: shipped as deleted' );
		$this->assertSame( array( 'order.deleted', array( 'id' => 424242 ) ), array( $events[2]['topic'], $events[2]['payload'] ) );
		$this->assertSame( 0, $outbox->depth() );
		$order->delete( true );
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
