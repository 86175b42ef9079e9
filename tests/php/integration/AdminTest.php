<?php
/**
 * Settings screen, schema upgrade path, requirement checks, HPOS declaration, CLI helpers.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Settings
 * @covers WooBrevo_Schema
 * @covers WooBrevo_Plugin
 * @covers WooBrevo_Cli
 */
final class AdminTest extends WooBrevo_TestCase {

	private const TOKEN = 'tok_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG_wxyz';

	private function render(): string {
		require_once ABSPATH . 'wp-admin/includes/template.php'; // wp-admin loads it for every screen.
		ob_start();
		try {
			( new WooBrevo_Settings() )->render();
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	public function test_screen_renders_without_the_stored_token(): void {
		wp_set_current_user( $this->admin_id() );
		WooBrevo_Settings::set( 'token', self::TOKEN );
		WooBrevo_Settings::set( 'agent_url', 'wss://agent.example/v1/stream' );
		( new WooBrevo_Outbox() )->record_rejected( array( 'event_id' => 'e-1', 'resource' => 'order', 'resource_id' => 3, 'topic' => 'order.updated' ), 'invalid_payload', 'bad <b>thing</b>' );
		$html = $this->render();
		$this->assertStringContainsString( 'name="woobrevo_agent_url"', $html );
		$this->assertStringContainsString( 'wss://agent.example/v1/stream', $html );
		$this->assertStringNotContainsString( self::TOKEN, $html );
		$this->assertStringNotContainsString( substr( self::TOKEN, 0, 20 ), $html );
		$this->assertStringContainsString( '…wxyz', $html );
		$this->assertStringContainsString( 'name="_wpnonce"', $html );
		$this->assertStringContainsString( 'Outbox depth', $html );
		$this->assertStringContainsString( 'bad &lt;b&gt;thing&lt;/b&gt;', $html, 'rejected reasons are escaped' );
	}

	public function test_screen_refuses_a_user_without_the_capability(): void {
		$this->expectException( WPDieException::class );
		$this->render();
	}

	private function post( array $fields, ?string $nonce ): void {
		$_POST = $fields;
		if ( null !== $nonce ) {
			$_POST['_wpnonce'] = $nonce;
		}
		$_REQUEST = $_POST;
	}

	public function test_save_with_a_valid_nonce(): void {
		wp_set_current_user( $this->admin_id() );
		WooBrevo_Settings::set( 'token', self::TOKEN );
		WooBrevo_Settings::set( 'agent_url', 'wss://agent.example/v1/stream' );
		$this->post( array( 'woobrevo_agent_url' => 'wss://agent.example/woobrevo/v1/stream', 'woobrevo_token' => '', 'woobrevo_payload_user' => '1', 'woobrevo_ca_file' => '/etc/ssl/ca.pem' ), wp_create_nonce( 'woobrevo_save' ) );
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( 'wss://agent.example/woobrevo/v1/stream', WooBrevo_Settings::get( 'agent_url' ) );
		$this->assertSame( self::TOKEN, WooBrevo_Settings::get( 'token' ), 'an empty field keeps the token (same agent; another one needs it typed: AdminSecurityTest)' );
		$this->assertSame( '0', WooBrevo_Settings::get( 'tls_verify' ) );
		$this->assertSame( 1, WooBrevo_Settings::get( 'payload_user' ) );
		$this->post( array( 'woobrevo_agent_url' => 'javascript:alert(1)', 'woobrevo_token' => 'new-token-1234567890', 'woobrevo_tls_verify' => '1' ), wp_create_nonce( 'woobrevo_save' ) );
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( '', WooBrevo_Settings::get( 'agent_url' ) );
		$this->assertSame( 'new-token-1234567890', WooBrevo_Settings::get( 'token' ) );
	}

	public function test_save_refuses_without_a_nonce_or_a_bad_one(): void {
		wp_set_current_user( $this->admin_id() );
		$this->post( array( 'woobrevo_agent_url' => 'wss://evil.example/' ), null );
		$this->assertFalse( ( new WooBrevo_Settings() )->save_from_request() );
		$this->post( array( 'woobrevo_agent_url' => 'wss://evil.example/' ), 'not-a-nonce' );
		$this->assertFalse( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( '', WooBrevo_Settings::get( 'agent_url' ) );
		$this->expectException( WPDieException::class );
		( new WooBrevo_Settings() )->action_admin_post_woobrevo_save();
	}

	public function test_save_refuses_without_the_capability(): void {
		$user = wp_insert_user( array( 'user_login' => 'shopper', 'user_email' => 'shopper@example.com', 'user_pass' => 'x', 'role' => 'customer' ) );
		wp_set_current_user( $user );
		$this->post( array( 'woobrevo_agent_url' => 'wss://evil.example/' ), wp_create_nonce( 'woobrevo_save' ) );
		$this->assertFalse( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( '', WooBrevo_Settings::get( 'agent_url' ) );
		$this->assertNull( ( new WooBrevo_Settings() )->test_connection_from_request() );
	}

	public function test_test_connection_needs_a_nonce_and_says_what_is_missing(): void {
		wp_set_current_user( $this->admin_id() );
		$this->post( array(), 'bad' );
		$this->assertNull( ( new WooBrevo_Settings() )->test_connection_from_request() );
		$this->post( array(), wp_create_nonce( 'woobrevo_test_connection' ) );
		$this->assertStringContainsString( 'agent URL', ( new WooBrevo_Settings() )->test_connection_from_request()['error'] );
	}

	public function test_backlog_warning_over_the_threshold(): void {
		wp_set_current_user( $this->admin_id() );
		$outbox = new WooBrevo_Outbox();
		foreach ( range( 1, 4 ) as $i ) {
			$outbox->add( 'product', $i, 'updated' );
		}
		delete_transient( 'woobrevo_depth' );
		$threshold = static fn() => 3;
		add_filter( 'woobrevo_backlog_threshold', $threshold );
		ob_start();
		( new WooBrevo_Settings() )->action_admin_notices();
		$html = (string) ob_get_clean();
		remove_filter( 'woobrevo_backlog_threshold', $threshold );
		$this->assertStringContainsString( '4 changes are waiting', $html );
		delete_transient( 'woobrevo_depth' );
		ob_start();
		( new WooBrevo_Settings() )->action_admin_notices();
		$this->assertSame( '', ob_get_clean(), 'default threshold 1000' );
	}

	public function test_requirements(): void {
		$this->assertSame( array(), WooBrevo_Plugin::requirement_errors( '6.1.9', '7.0.0', '8.0.0' ) );
		$this->assertStringContainsString( 'not active', WooBrevo_Plugin::requirement_errors( '6.8', null, '8.2' )[0] );
		$this->assertStringContainsString( 'WooCommerce 7.0', WooBrevo_Plugin::requirement_errors( '6.8', '6.9.4', '8.2' )[0] );
		$this->assertStringContainsString( 'WordPress 6.1', WooBrevo_Plugin::requirement_errors( '6.0', '8.0', '8.2' )[0] );
		$this->assertStringContainsString( 'PHP 8.0', WooBrevo_Plugin::requirement_errors( '6.8', '8.0', '7.4.33' )[0] );
	}

	public function test_inert_with_an_admin_notice_when_woocommerce_is_missing(): void {
		$this->assertNull( WooBrevo_Plugin::start( WooBrevo_Plugin::requirement_errors( '6.8', null, '8.2' ) ) );
		wp_set_current_user( $this->admin_id() );
		ob_start();
		WooBrevo_Plugin::action_admin_notices_requirements();
		$html = (string) ob_get_clean();
		remove_action( 'admin_notices', array( 'WooBrevo_Plugin', 'action_admin_notices_requirements' ) );
		remove_action( 'network_admin_notices', array( 'WooBrevo_Plugin', 'action_admin_notices_requirements' ) );
		$this->assertStringContainsString( 'needs WooCommerce', $html );
		$this->assertStringContainsString( 'notice-error', $html );
	}

	public function test_boot_words_the_problems_only_when_the_notice_shows(): void {
		$problems = WooBrevo_Plugin::requirement_problems( '6.8', '6.9.4', '8.2' );
		$this->assertSame( array( array( 'WooCommerce', WOOBREVO_MIN_WC, '6.9.4' ) ), $problems );
		$this->assertNull( WooBrevo_Plugin::start( $problems ) );
		wp_set_current_user( $this->admin_id() );
		ob_start();
		WooBrevo_Plugin::action_admin_notices_requirements();
		$html = (string) ob_get_clean();
		remove_action( 'admin_notices', array( 'WooBrevo_Plugin', 'action_admin_notices_requirements' ) );
		remove_action( 'network_admin_notices', array( 'WooBrevo_Plugin', 'action_admin_notices_requirements' ) );
		$this->assertStringContainsString( 'WooBrevo needs WooCommerce 7.0 or newer (this site runs 6.9.4). It stays inactive until then.', $html );
	}

	public function test_hpos_declared_and_all_hooks_registered(): void {
		if ( property_exists( \Automattic\WooCommerce\Utilities\FeaturesUtil::class, 'declared' ) ) {
			$this->assertTrue( \Automattic\WooCommerce\Utilities\FeaturesUtil::$declared['custom_order_tables']['woobrevo/woobrevo.php'] );
		}
		foreach ( WooBrevo_Plugin::instance()->hooks() as $hook ) {
			$this->assertNotFalse( has_filter( $hook[0], $hook[1] ), $hook[0] );
		}
		$this->assertSame( 5, has_action( 'init', array( 'WooBrevo_Schema', 'maybe_upgrade' ) ) );
	}

	public function test_schema_upgrade_path(): void {
		global $wpdb;
		$table = WooBrevo_Schema::table();
		$wpdb->query( "ALTER TABLE {$table} DROP COLUMN touched" ); // phpcs:ignore
		update_option( WooBrevo_Schema::VERSION_OPTION, 1 );
		WooBrevo_Schema::maybe_upgrade();
		$this->assertSame( WooBrevo_Schema::VERSION, (int) get_option( WooBrevo_Schema::VERSION_OPTION ) );
		$this->assertContains( 'touched', $wpdb->get_col( "SHOW COLUMNS FROM {$table}" ) ); // phpcs:ignore
		$epoch = get_option( 'woobrevo_outbox_epoch' );
		WooBrevo_Schema::maybe_upgrade();
		$this->assertSame( $epoch, get_option( 'woobrevo_outbox_epoch' ), 'the epoch survives upgrades' );
		$this->assertMatchesRegularExpression( '/^[0-9a-f]{8,}$/', $epoch );
	}

	public function test_cli_helpers(): void {
		WooBrevo_Cli::store_token( self::TOKEN );
		$this->assertSame( self::TOKEN, WooBrevo_Settings::get( 'token' ) );
		$status = WooBrevo_Cli::status_data();
		$this->assertSame( 'set (…wxyz)', $status['token'] );
		$this->assertSame( 0, $status['depth'] );
		$this->expectException( InvalidArgumentException::class );
		WooBrevo_Cli::store_token( 'short' );
	}
}
