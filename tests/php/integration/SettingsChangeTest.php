<?php
/**
 * A new agent URL or token, whatever saves it (the settings screen's handler, the WP-CLI
 * command's method, a plain `wp option update`), ends the backoff and ships at the end of that
 * request to the real agent; a URL without a path is stored with /v1/stream; Test connection
 * names the URL to set when the agent refuses the URL's path; a running `wp woobrevo stream`
 * picks up a URL saved by another process.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

require_once dirname( __DIR__ ) . '/unit/WsTestSupport.php';

final class SettingsChangeTest extends TestCase {

	private const TOKEN = 'settings-change-token_0123456789abcdefghijklmnopqrstuvwxyz';

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
			)
		);
	}

	public static function tearDownAfterClass(): void {
		foreach ( array( 'woobrevo_agent_url', 'woobrevo_token', 'woobrevo_last_error', WooBrevo_Shipper::BACKOFF_STEP_OPTION, WooBrevo_Shipper::BACKOFF_UNTIL_OPTION ) as $option ) {
			delete_option( $option );
		}
		WooBrevo_Settings::take_changed_sites();
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
		foreach ( array( WooBrevo_Shipper::BACKOFF_STEP_OPTION, WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 'woobrevo_last_error', 'woobrevo_connected', 'woobrevo_last_ack' ) as $option ) {
			delete_option( $option );
		}
		WooBrevo_Settings::set( 'agent_url', $this->agent_url() );
		WooBrevo_Settings::set( 'token', self::TOKEN );
		WooBrevo_Settings::set( 'tls_verify', '1' );
		WooBrevo_Settings::set( 'ca_file', '' );
		// Not due for a heartbeat: at shutdown only new rows or a settings change ship.
		update_option( 'woobrevo_last_tick', time() );
		WooBrevo_Settings::take_changed_sites();
		WooBrevo_Outbox::reset_request();
		wp_set_current_user( 0 );
	}

	protected function tearDown(): void {
		WooBrevo_Settings::take_changed_sites();
		wp_set_current_user( 0 );
		$_POST    = array();
		$_REQUEST = array();
	}

	private function agent_url( string $path = '/v1/stream' ): string {
		return sprintf( 'ws://127.0.0.1:%d%s', self::$agent['port'], $path );
	}

	/** Customer-deleted rows (no WooCommerce object needed), written by an earlier request. */
	private function add_rows( int $count ): void {
		$outbox = new WooBrevo_Outbox();
		for ( $i = 0; $i < $count; $i++ ) {
			$outbox->add( 'customer', 7000 + $i, 'deleted' );
		}
		WooBrevo_Outbox::reset_request();
	}

	/** The outbox's rows as the event ids they are shipped under. */
	private function event_ids(): array {
		global $wpdb;
		$epoch = ( new WooBrevo_Outbox() )->epoch();
		return array_map(
			static fn( $id ): string => $epoch . '-' . $id,
			$wpdb->get_col( 'SELECT id FROM ' . WooBrevo_Schema::table() . ' ORDER BY id' ) // phpcs:ignore -- no input.
		);
	}

	/** What WordPress runs at the end of the request (the test bootstrap turns it off elsewhere). */
	private function shutdown(): void {
		add_filter( 'woobrevo_ship_on_shutdown', '__return_true', 99 );
		try {
			WooBrevo_Plugin::instance()->action_shutdown();
		} finally {
			remove_filter( 'woobrevo_ship_on_shutdown', '__return_true', 99 );
		}
	}

	/** A failed tick leaves a long backoff, as a store that had a wrong setting for a while has. */
	private function fail_and_back_off( string $expected_error ): void {
		WooBrevo_Settings::take_changed_sites(); // That setting was saved in an earlier request.
		// An earlier test's stream process holds the site's shipper lock until MariaDB sees its
		// connection close, which a loaded machine can take a moment to do.
		$deadline = microtime( true ) + 15;
		do {
			$stats = ( WooBrevo_Plugin::shipper() )->tick();
			$held  = null !== $stats['skipped'] && false !== strpos( (string) $stats['skipped'], 'another shipper' );
		} while ( $held && microtime( true ) < $deadline && usleep( 100000 ) === null );
		$this->assertStringContainsString( $expected_error, (string) $stats['error'], 'the tick: ' . wp_json_encode( $stats ) );
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() + WooBrevo_Shipper::MAX_BACKOFF );
		$this->assertStringContainsString( 'backing off', (string) WooBrevo_Plugin::shipper()->tick()['skipped'] );
		// The end of a request that changed no setting ships nothing: the rows wait.
		$this->shutdown();
		$this->assertGreaterThan( 0, ( new WooBrevo_Outbox() )->depth() );
	}

	private function admin(): void {
		wp_set_current_user( (int) get_user_by( 'login', 'admin' )->ID );
	}

	private function post( array $fields, string $action ): void {
		$_POST             = $fields;
		$_POST['_wpnonce'] = wp_create_nonce( $action );
		$_REQUEST          = $_POST;
	}

	private function assert_backoff_cleared(): void {
		$this->assertSame( array( 0, 0 ), array( (int) get_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION, 0 ), (int) get_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 0 ) ) );
		$this->assertSame( '', WooBrevo_Settings::get( 'last_error' ), 'the error about the old setting is gone' );
	}

	private function assert_shipped( array $ids ): void {
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
		$this->assertSame( $ids, array_slice( array_column( WsTestSupport::agent_inbox( self::$agent ), 'event_id' ), -count( $ids ) ), 'stored by the agent' );
		$this->assertGreaterThan( 0, (int) WooBrevo_Settings::get( 'connected' ) );
		$this->assertSame( '', WooBrevo_Settings::get( 'last_error' ) );
	}

	public function test_a_url_without_a_path_gets_the_stream_path(): void {
		$cases = array(
			'wss://agent.example.com:8765'                 => 'wss://agent.example.com:8765/v1/stream',
			'wss://agent.example.com:8765/'                => 'wss://agent.example.com:8765/v1/stream',
			' ws://127.0.0.1:9000 '                        => 'ws://127.0.0.1:9000/v1/stream',
			'WSS://[::1]:8765/?site=a'                     => 'WSS://[::1]:8765/v1/stream?site=a',
			'wss://agent.example.com/v1/stream'            => 'wss://agent.example.com/v1/stream',
			'wss://shop.example/woobrevo/v1/stream'        => 'wss://shop.example/woobrevo/v1/stream',
			'wss://agent.example.com/stream'               => 'wss://agent.example.com/stream',
			''                                             => '',
		);
		foreach ( $cases as $url => $stored ) {
			$this->assertSame( $stored, WooBrevo_Settings::stream_url( $url ), $url );
		}
		// The settings screen.
		$this->admin();
		$this->post( array( 'woobrevo_agent_url' => 'wss://agent.example.com:8765', 'woobrevo_token' => self::TOKEN ), 'woobrevo_save' ); // Another agent: the token typed again.
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( 'wss://agent.example.com:8765/v1/stream', get_option( 'woobrevo_agent_url' ) );
		// `wp option update`, on a site where the option exists and where it does not yet.
		update_option( 'woobrevo_agent_url', 'wss://agent.example.com/' );
		$this->assertSame( 'wss://agent.example.com/v1/stream', get_option( 'woobrevo_agent_url' ) );
		delete_option( 'woobrevo_agent_url' );
		update_option( 'woobrevo_agent_url', 'wss://other.example.com:8765' );
		$this->assertSame( 'wss://other.example.com:8765/v1/stream', get_option( 'woobrevo_agent_url' ) );
		// A reverse proxy's path is kept as it is.
		update_option( 'woobrevo_agent_url', 'wss://shop.example/woobrevo/v1/stream' );
		$this->assertSame( 'wss://shop.example/woobrevo/v1/stream', get_option( 'woobrevo_agent_url' ) );
	}

	public function test_saving_a_new_url_on_the_settings_screen_ends_the_backoff_and_ships_at_once(): void {
		$this->add_rows( 12 );
		$ids = $this->event_ids();
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', WsTestSupport::free_port() ) );
		$this->fail_and_back_off( 'cannot connect' );

		// The store owner fixes the URL (typed without its path; another port, so the token typed again) and saves.
		$this->admin();
		$this->post( array( 'woobrevo_agent_url' => $this->agent_url( '' ), 'woobrevo_token' => self::TOKEN, 'woobrevo_tls_verify' => '1' ), 'woobrevo_save' );
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( $this->agent_url(), WooBrevo_Settings::get( 'agent_url' ) );
		$this->assert_backoff_cleared();
		$this->assertSame( 12, ( new WooBrevo_Outbox() )->depth(), 'nothing is sent inside the save itself' );
		$this->shutdown(); // Then the end of that same request ships.
		$this->assert_shipped( $ids );
	}

	public function test_a_new_token_from_the_wp_cli_command_ends_the_backoff_and_ships_at_once(): void {
		$this->add_rows( 5 );
		$ids = $this->event_ids();
		WooBrevo_Settings::set( 'token', 'revoked-token_' . bin2hex( random_bytes( 16 ) ) );
		$this->fail_and_back_off( 'token refused' );

		WooBrevo_Cli::store_token( self::TOKEN ); // What `wp woobrevo set-token` runs.
		$this->assert_backoff_cleared();
		$this->shutdown();
		$this->assert_shipped( $ids );
	}

	public function test_wp_option_update_of_the_url_ends_the_backoff_and_ships_at_once(): void {
		$this->add_rows( 3 );
		$ids = $this->event_ids();
		WooBrevo_Settings::set( 'agent_url', $this->agent_url( '/wrong/path' ) );
		$this->fail_and_back_off( 'HTTP 404' );

		update_option( 'woobrevo_agent_url', $this->agent_url( '/' ) ); // `wp option update woobrevo_agent_url …`
		$this->assertSame( $this->agent_url(), WooBrevo_Settings::get( 'agent_url' ) );
		$this->assert_backoff_cleared();
		$this->shutdown();
		$this->assert_shipped( $ids );
	}

	public function test_wp_woobrevo_stream_reconnects_with_a_url_saved_by_another_process(): void {
		$this->add_rows( 4 );
		$ids = $this->event_ids();
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', WsTestSupport::free_port() ) );
		$proc = proc_open(
			array( PHP_BINARY, __DIR__ . '/shipper_worker.php', 'stream', '30' ),
			array( 1 => array( 'pipe', 'w' ), 2 => array( 'pipe', 'w' ) ),
			$pipes
		);
		try {
			$this->assertSame( "streaming\n", fgets( $pipes[1] ) );
			$deadline = microtime( true ) + 10;
			do {
				usleep( 100000 );
				wp_cache_flush();
			} while ( (int) get_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION, 0 ) < 1 && microtime( true ) < $deadline );
			$this->assertGreaterThanOrEqual( 1, (int) get_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION, 0 ), 'the stream is failing on the wrong URL' );

			update_option( 'woobrevo_agent_url', $this->agent_url() ); // This process is the settings screen.
			$deadline = microtime( true ) + WooBrevo_Shipper::STREAM_RECHECK + 5;
			while ( ( new WooBrevo_Outbox() )->depth() > 0 && microtime( true ) < $deadline ) {
				usleep( 100000 );
			}
			$this->assertSame( $ids, array_slice( array_column( WsTestSupport::agent_inbox( self::$agent ), 'event_id' ), -4 ), 'shipped by the stream process with the new URL' );
			$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
		} finally {
			proc_terminate( $proc );
			proc_close( $proc );
		}
	}

	public function test_saving_the_same_settings_keeps_the_backoff(): void {
		$this->add_rows( 2 );
		WooBrevo_Settings::set( 'agent_url', $this->agent_url( '/nowhere' ) );
		$this->fail_and_back_off( 'HTTP 404' );
		$until = (int) get_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION );

		$this->admin();
		$this->post( array( 'woobrevo_agent_url' => $this->agent_url( '/nowhere' ), 'woobrevo_token' => '', 'woobrevo_tls_verify' => '1' ), 'woobrevo_save' );
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( $until, (int) get_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION ) );
		$this->assertSame( array(), WooBrevo_Settings::take_changed_sites() );
		$this->shutdown();
		$this->assertSame( 2, ( new WooBrevo_Outbox() )->depth() );
	}

	public function test_test_connection_names_the_url_to_set_when_the_path_is_wrong(): void {
		$this->admin();
		foreach ( array( '/stream', '/v1/stream/', '/ws?x=1' ) as $path ) {
			WooBrevo_Settings::set( 'agent_url', $this->agent_url( $path ) );
			$this->post( array(), 'woobrevo_test_connection' );
			$stats = ( new WooBrevo_Settings() )->test_connection_from_request();
			$want  = $this->agent_url( '?' === $path[3] ? '/v1/stream?x=1' : '/v1/stream' );
			$this->assertSame( 404, $stats['error_code'], $path );
			$this->assertStringEndsWith( 'Set the agent URL to ' . $want, (string) $stats['error'], $path );
			$this->assertSame( $stats['error'], WooBrevo_Settings::get( 'last_error' ), 'the status panel says the same' );
			list( $type, $message ) = WooBrevo_Settings::test_connection_notice( $stats );
			$this->assertSame( 'error', $type );
			$this->assertStringContainsString( $want, $message );
		}

		// The agent's HTTP port (webhooks, /metrics) instead of its stream port: no URL there is
		// the stream; the message says what to check and which URLs were tried.
		$http = sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$agent['http_port'] );
		WooBrevo_Settings::set( 'agent_url', $http );
		$this->post( array(), 'woobrevo_test_connection' );
		$stats = ( new WooBrevo_Settings() )->test_connection_from_request();
		$this->assertSame( 404, $stats['error_code'], (string) $stats['error'] );
		$this->assertStringContainsString( 'The agent is not at ' . $http, (string) $stats['error'] );
		$this->assertStringContainsString( 'Check the host and port', (string) $stats['error'] );

		// The right URL, during a long backoff: Test connection is an admin's, it tries at once.
		WooBrevo_Settings::set( 'agent_url', $this->agent_url() );
		update_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION, 9, false );
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, time() + WooBrevo_Shipper::MAX_BACKOFF );
		$this->post( array(), 'woobrevo_test_connection' );
		$stats = ( new WooBrevo_Settings() )->test_connection_from_request();
		$this->assertNull( $stats['error'] );
		$this->assertNull( $stats['skipped'] );
		$this->assertSame( 'success', WooBrevo_Settings::test_connection_notice( $stats )[0] );
		$this->assertSame( 0, WooBrevo_Plugin::shipper()->backoff()['failures'] );
	}

	public function test_candidate_urls_and_the_notices(): void {
		$this->assertSame(
			array( 'wss://shop.example/woobrevo/v1/stream', 'wss://shop.example/v1/stream' ),
			WooBrevo_Settings::stream_url_candidates( 'wss://shop.example/woobrevo/' ),
			'a reverse proxy prefix first'
		);
		$this->assertSame( array( 'wss://a.example:8765/v1/stream' ), WooBrevo_Settings::stream_url_candidates( 'wss://a.example:8765/v1/stream/' ) );
		$this->assertSame( array( 'wss://a.example/v1/stream' ), WooBrevo_Settings::stream_url_candidates( 'wss://a.example/woobrevo/v1/stream' ) );
		$this->assertSame( array(), WooBrevo_Settings::stream_url_candidates( 'not a url' ) );
		// A skipped tick is not a success.
		$notice = WooBrevo_Settings::test_connection_notice( array( 'error' => null, 'skipped' => 'another shipper is running for this site', 'sent' => 0, 'acked' => 0 ) );
		$this->assertSame( 'error', $notice[0] );
		$this->assertStringContainsString( 'another shipper is running', $notice[1] );
	}
}
