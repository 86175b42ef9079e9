<?php
/**
 * Multisite: a network admin changes one site's agent URL (Network Admin → Sites → Edit →
 * Settings writes it under switch_to_blog()): only that site ends its backoff and ships at the
 * end of the request, to the real agent; the other site keeps its backoff and its rows.
 *
 * @package WooBrevo\Tests
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

require_once dirname( __DIR__ ) . '/unit/WsTestSupport.php';

/**
 * @covers WooBrevo_Settings
 * @covers WooBrevo_Plugin
 */
final class NetworkSettingsChangeTest extends TestCase {

	private const TOKENS = array(
		1 => 'network-main-token_0123456789abcdefghijklmnopqrstuvwxyzAB',
		2 => 'network-shop2-token_0123456789abcdefghijklmnopqrstuvwxyzA',
	);

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
					'id'    => 'main',
					'token' => self::TOKENS[1],
				),
				array(
					'id'    => 'shop2',
					'token' => self::TOKENS[2],
				),
			)
		);
	}

	public static function tearDownAfterClass(): void {
		global $wpdb;
		foreach ( array( 1, 2 ) as $blog ) {
			switch_to_blog( $blog );
			$wpdb->query( 'DELETE FROM ' . WooBrevo_Schema::table() ); // phpcs:ignore -- test cleanup, no input.
			foreach ( array( 'woobrevo_agent_url', 'woobrevo_token', 'woobrevo_last_error', 'woobrevo_connected', 'woobrevo_last_tick', WooBrevo_Shipper::BACKOFF_STEP_OPTION, WooBrevo_Shipper::BACKOFF_UNTIL_OPTION ) as $option ) {
				delete_option( $option );
			}
			restore_current_blog();
		}
		WooBrevo_Settings::take_changed_sites();
		WsTestSupport::stop_agent( self::$agent );
		WsTestSupport::remove_dir( self::$dir . '/state' );
		WsTestSupport::remove_dir( self::$dir );
	}

	/**
	 * A site that had a wrong agent URL for a while: rows waiting, a long backoff.
	 *
	 * @return string[] The event ids of its rows.
	 */
	private function site_in_backoff( int $blog, int $rows ): array {
		global $wpdb;
		switch_to_blog( $blog );
		$wpdb->query( 'DELETE FROM ' . WooBrevo_Schema::table() ); // phpcs:ignore -- test setup, no input.
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', WsTestSupport::free_port() ) );
		WooBrevo_Settings::set( 'token', self::TOKENS[ $blog ] );
		WooBrevo_Outbox::reset_request();
		$outbox = new WooBrevo_Outbox();
		for ( $i = 0; $i < $rows; $i++ ) {
			$outbox->add( 'customer', 8000 + $i, 'deleted' );
		}
		WooBrevo_Outbox::reset_request();
		$this->assertStringContainsString( 'cannot connect', (string) WooBrevo_Plugin::shipper()->tick()['error'] );
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() + WooBrevo_Shipper::MAX_BACKOFF );
		update_option( 'woobrevo_last_tick', time() ); // No heartbeat due.
		$epoch = $outbox->epoch();
		$ids   = array_map( static fn( $id ): string => $epoch . '-' . $id, $wpdb->get_col( 'SELECT id FROM ' . WooBrevo_Schema::table() . ' ORDER BY id' ) ); // phpcs:ignore -- no input.
		restore_current_blog();
		return $ids;
	}

	/** @return array{0: int, 1: int, 2: int, 3: string} Backoff step and until, outbox depth, last error of a site. */
	private function site_state( int $blog ): array {
		switch_to_blog( $blog );
		$state = array(
			(int) get_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION, 0 ),
			(int) get_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 0 ),
			( new WooBrevo_Outbox() )->depth(),
			(string) WooBrevo_Settings::get( 'last_error' ),
		);
		restore_current_blog();
		return $state;
	}

	public function test_only_the_site_whose_url_changed_reconnects(): void {
		$this->site_in_backoff( 1, 4 );
		$ids_2 = $this->site_in_backoff( 2, 6 );
		WooBrevo_Settings::take_changed_sites(); // Those were earlier requests.
		$main_before = $this->site_state( 1 );
		$this->assertSame( 1, $main_before[0] );
		$this->assertSame( 4, $main_before[2] );

		// A network admin's request on the main site saves site 2's agent URL (typed without a path).
		wp_set_current_user( 1 );
		switch_to_blog( 2 );
		update_option( 'woobrevo_agent_url', sprintf( 'ws://127.0.0.1:%d', self::$agent['port'] ) );
		$this->assertSame( sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$agent['port'] ), WooBrevo_Settings::get( 'agent_url' ) );
		restore_current_blog();
		$this->assertSame( array( 0, 0, 6, '' ), $this->site_state( 2 ), 'site 2: backoff and stale error gone' );
		$this->assertSame( $main_before, $this->site_state( 1 ), 'site 1 untouched' );

		add_filter( 'woobrevo_ship_on_shutdown', '__return_true', 99 );
		try {
			WooBrevo_Plugin::instance()->action_shutdown(); // The end of that request, on the main site.
		} finally {
			remove_filter( 'woobrevo_ship_on_shutdown', '__return_true', 99 );
			wp_set_current_user( 0 );
		}
		$this->assertSame( 1, get_current_blog_id() );
		$this->assertSame( array( 0, 0, 0, '' ), $this->site_state( 2 ), 'site 2 shipped at once' );
		$this->assertSame( $ids_2, array_column( WsTestSupport::agent_inbox( self::$agent, 'shop2' ), 'event_id' ), 'as site shop2' );
		$this->assertSame( $main_before, $this->site_state( 1 ), 'site 1 still waits out its backoff' );
		$this->assertSame( array(), WsTestSupport::agent_inbox( self::$agent, 'main' ) );
	}
}
