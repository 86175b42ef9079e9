<?php
/**
 * Issue 16, finding 7 (the admin screen's part): who may change the connection, a new agent
 * needs the token typed again, and the screen warns of a ws:// URL to another machine and of a
 * certificate that is not verified, in the form's notices and in the status panel.
 *
 * The attack: a shop manager (manage_woocommerce, not manage_options) sets the agent URL to a
 * server of their own and saves without touching the token; the next tick sends the stored
 * token there in its Authorization header.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Settings
 */
final class AdminSecurityTest extends WooBrevo_TestCase {

	private const TOKEN = 'tok_admin-security_0123456789abcdefghijklmnopqrstuvwxyz_k9Q2';

	private const URL = 'wss://agent.example/v1/stream';

	protected function setUp(): void {
		parent::setUp();
		WooBrevo_Settings::set( 'agent_url', self::URL );
		WooBrevo_Settings::set( 'token', self::TOKEN );
		WooBrevo_Settings::set( 'tls_verify', '1' );
		WooBrevo_Settings::set( 'ca_file', '' );
		WooBrevo_Settings::set( 'guest_carts', '1' );
		WooBrevo_Settings::take_changed_sites(); // Saved in an earlier request.
	}

	protected function tearDown(): void {
		WooBrevo_Settings::take_changed_sites();
		parent::tearDown();
	}

	private function shop_manager(): int {
		$user = wp_insert_user(
			array(
				'user_login' => 'manager_' . wp_generate_password( 6, false ),
				'user_email' => wp_generate_password( 6, false ) . '@manager.example',
				'user_pass'  => wp_generate_password(),
				'role'       => 'shop_manager',
			)
		);
		$this->assertIsInt( $user );
		return $user;
	}

	/** The form as the screen posts it (all fields), with $fields over it. */
	private function post( array $fields ): void {
		$_POST             = array_merge(
			array(
				'woobrevo_agent_url'    => self::URL,
				'woobrevo_token'        => '',
				'woobrevo_payload_user' => '0',
				'woobrevo_tls_verify'   => '1',
				'woobrevo_ca_file'      => '',
				'woobrevo_guest_carts'  => '1',
			),
			$fields
		);
		$_POST['_wpnonce'] = wp_create_nonce( 'woobrevo_save' );
		$_REQUEST          = $_POST;
	}

	private function save( array $fields ): WooBrevo_Settings {
		$this->post( $fields );
		$settings = new WooBrevo_Settings();
		$settings->save_from_request();
		return $settings;
	}

	private function assert_connection_unchanged( string $why ): void {
		$this->assertSame( self::URL, WooBrevo_Settings::get( 'agent_url' ), $why );
		$this->assertSame( self::TOKEN, WooBrevo_Settings::get( 'token' ), $why );
		$this->assertSame( '1', WooBrevo_Settings::get( 'tls_verify' ), $why );
		$this->assertSame( '', WooBrevo_Settings::get( 'ca_file' ), $why );
	}

	private function render(): string {
		require_once ABSPATH . 'wp-admin/includes/template.php';
		ob_start();
		try {
			( new WooBrevo_Settings() )->render();
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	/** The status panel's "Connection security" cell, as text. */
	private static function security_cell( string $html ): string {
		self::assertMatchesRegularExpression( '#<td class="woobrevo-connection-security">(.*?)</td>#s', $html );
		preg_match( '#<td class="woobrevo-connection-security">(.*?)</td>#s', $html, $m );
		return trim( (string) preg_replace( '/\s+/', ' ', wp_strip_all_tags( $m[1] ) ) );
	}

	/** The screen's security warnings (notice-warning, role=alert), as text. */
	private static function warnings( string $html ): array {
		preg_match_all( '#<div class="notice notice-warning woobrevo-security-warning" role="alert"><p>(.*?)</p></div>#s', $html, $m );
		return array_map( static fn( $w ) => html_entity_decode( $w, ENT_QUOTES ), $m[1] );
	}

	public function test_finding_7_the_connection_capability_is_manage_options(): void {
		$this->assertSame( 'manage_options', WooBrevo_Settings::CONNECTION_CAPABILITY );
		$this->assertTrue( user_can( $this->admin_id(), WooBrevo_Settings::CONNECTION_CAPABILITY ) );
		$manager = $this->shop_manager();
		$this->assertTrue( user_can( $manager, WooBrevo_Settings::CAPABILITY ), 'a shop manager still has the screen' );
		$this->assertFalse( user_can( $manager, WooBrevo_Settings::CONNECTION_CAPABILITY ) );
	}

	public function test_finding_7_url_change_by_a_shop_manager_is_refused_and_the_token_stays(): void {
		wp_set_current_user( $this->shop_manager() );
		// The attack: another host, the token field left empty.
		$settings = $this->save( array( 'woobrevo_agent_url' => 'wss://attacker.example:443/v1/stream' ) );
		$this->assertStringContainsString( 'only an administrator can change the agent URL', (string) $settings->refusal() );
		$this->assert_connection_unchanged( 'a shop manager changes no connection setting' );
		$this->assertSame( array(), WooBrevo_Settings::take_changed_sites(), 'nothing reconnects' );
		// Nor with a token of their own, nor by removing the token, nor by turning verification off.
		foreach (
			array(
				array( 'woobrevo_token' => 'tok_of_the_manager_0123456789abcdefghijkl' ),
				array( 'woobrevo_clear_token' => '1' ),
				array( 'woobrevo_tls_verify' => '' ),
				array( 'woobrevo_ca_file' => '/tmp/attacker-ca.pem' ),
			) as $fields
		) {
			$this->assertNotNull( $this->save( $fields )->refusal(), (string) wp_json_encode( $fields ) );
			$this->assert_connection_unchanged( (string) wp_json_encode( $fields ) );
		}
	}

	public function test_finding_7_a_shop_manager_still_saves_the_other_settings(): void {
		wp_set_current_user( $this->shop_manager() );
		// What the screen posts for a shop manager: the connection fields are disabled, so absent.
		$_POST             = array( 'woobrevo_payload_user' => '0' );
		$_POST['_wpnonce'] = wp_create_nonce( 'woobrevo_save' );
		$_REQUEST          = $_POST;
		$settings          = new WooBrevo_Settings();
		$this->assertTrue( $settings->save_from_request() );
		$this->assertNull( $settings->refusal() );
		$this->assertSame( '0', WooBrevo_Settings::get( 'guest_carts' ), 'the unticked box is saved' );
		$this->assert_connection_unchanged( 'absent connection fields leave the connection as it is (TLS stays verified)' );
	}

	public function test_finding_7_the_screen_shows_a_shop_manager_the_connection_read_only(): void {
		wp_set_current_user( $this->shop_manager() );
		$html = $this->render();
		$this->assertStringContainsString( 'woobrevo-connection-locked', $html );
		foreach ( array( 'woobrevo_agent_url', 'woobrevo_token', 'woobrevo_tls_verify', 'woobrevo_ca_file' ) as $name ) {
			$this->assertMatchesRegularExpression( '#<input[^>]* name="' . $name . '"[^>]*disabled#', $html, $name );
		}
		$this->assertStringNotContainsString( 'woobrevo_clear_token', $html );
		$this->assertDoesNotMatchRegularExpression( '#<input[^>]* name="woobrevo_guest_carts"[^>]*disabled#', $html );

		wp_set_current_user( $this->admin_id() );
		$html = $this->render();
		$this->assertStringNotContainsString( 'woobrevo-connection-locked', $html );
		$this->assertDoesNotMatchRegularExpression( '#<input[^>]* name="woobrevo_agent_url"[^>]*disabled#', $html );
		$this->assertStringContainsString( 'woobrevo_clear_token', $html );
	}

	public function test_finding_7_url_change_without_the_token_is_refused_for_an_admin_too(): void {
		wp_set_current_user( $this->admin_id() );
		$refused = array(
			'wss://attacker.example/v1/stream'      => 'another host',
			'wss://agent.example:8443/v1/stream'    => 'another port',
			'ws://agent.example/v1/stream'          => 'another scheme (and port)',
			'ws://agent.example:443/v1/stream'      => 'another scheme, same port',
			'wss://agent.example.attacker.example/' => 'a longer host',
		);
		foreach ( $refused as $url => $why ) {
			$settings = $this->save(
				array(
					'woobrevo_agent_url'   => $url,
					'woobrevo_guest_carts' => '',
				)
			);
			$this->assertStringContainsString( 'Type the site token again', (string) $settings->refusal(), $why );
			$this->assert_connection_unchanged( $why );
			$this->assertSame( '1', WooBrevo_Settings::get( 'guest_carts' ), "$why: a refused save saves nothing" );
		}
		$this->assertSame( array(), WooBrevo_Settings::take_changed_sites() );

		// The same server: another path, the port or scheme spelled out, a URL without its path.
		foreach ( array( 'wss://agent.example/woobrevo/v1/stream', 'wss://agent.example:443/v1/stream', 'wss://Agent.Example/v1/stream', 'wss://agent.example' ) as $url ) {
			$settings = $this->save( array( 'woobrevo_agent_url' => $url ) );
			$this->assertNull( $settings->refusal(), $url );
			$this->assertSame( self::TOKEN, WooBrevo_Settings::get( 'token' ), $url );
		}
		$this->assertSame( 'wss://agent.example/v1/stream', WooBrevo_Settings::get( 'agent_url' ) );
	}

	public function test_finding_7_url_change_with_the_token_typed_again_or_removed_is_saved(): void {
		wp_set_current_user( $this->admin_id() );
		$settings = $this->save(
			array(
				'woobrevo_agent_url' => 'wss://new-agent.example:8765',
				'woobrevo_token'     => 'tok_new_agent_0123456789abcdefghijklmnopqrstuv',
			)
		);
		$this->assertNull( $settings->refusal() );
		$this->assertSame( 'wss://new-agent.example:8765/v1/stream', WooBrevo_Settings::get( 'agent_url' ) );
		$this->assertSame( 'tok_new_agent_0123456789abcdefghijklmnopqrstuv', WooBrevo_Settings::get( 'token' ) );
		$this->assertSame( array( get_current_blog_id() ), WooBrevo_Settings::take_changed_sites() );

		$settings = $this->save(
			array(
				'woobrevo_agent_url'   => 'wss://third.example/v1/stream',
				'woobrevo_clear_token' => '1',
			)
		);
		$this->assertNull( $settings->refusal() );
		$this->assertSame( 'wss://third.example/v1/stream', WooBrevo_Settings::get( 'agent_url' ) );
		$this->assertSame( '', WooBrevo_Settings::get( 'token' ), 'no token left to send anywhere' );

		// With no token stored there is nothing to protect: a URL alone is saved.
		$this->assertNull( $this->save( array( 'woobrevo_agent_url' => 'wss://fourth.example/v1/stream' ) )->refusal() );
		$this->assertSame( 'wss://fourth.example/v1/stream', WooBrevo_Settings::get( 'agent_url' ) );
	}

	public function test_finding_7_the_save_handler_shows_the_refusal_and_goes_back_to_the_screen(): void {
		wp_set_current_user( $this->admin_id() );
		$this->post( array( 'woobrevo_agent_url' => 'wss://attacker.example/v1/stream' ) );
		$redirected = static function ( $location ) {
			throw new RuntimeException( 'redirect: ' . $location );
		};
		add_filter( 'wp_redirect', $redirected );
		try {
			( new WooBrevo_Settings() )->action_admin_post_woobrevo_save();
			$this->fail( 'the handler redirects' );
		} catch ( RuntimeException $e ) {
			$this->assertStringContainsString( 'page=woobrevo', $e->getMessage() );
		} finally {
			remove_filter( 'wp_redirect', $redirected );
		}
		$notice = get_transient( WooBrevo_Options::NOTICE_TRANSIENT_PREFIX . get_current_user_id() );
		$this->assertSame( 'error', $notice['type'] );
		$this->assertStringContainsString( 'Type the site token again', $notice['message'] );
		$this->assert_connection_unchanged( 'refused' );
		$html = $this->render();
		$this->assertMatchesRegularExpression( '#<div class="notice notice-error woobrevo-notice" role="alert"><p>Not saved: the agent URL wss://attacker.example/v1/stream names another server#', $html );
		$this->assertStringNotContainsString( self::TOKEN, $html );
	}

	public function test_finding_7_ws_to_another_machine_is_warned_on_the_screen_and_in_the_status_panel(): void {
		wp_set_current_user( $this->admin_id() );
		WooBrevo_Settings::set( 'agent_url', 'ws://agent.example:8765/v1/stream' );
		$html     = $this->render();
		$warnings = self::warnings( $html );
		$this->assertCount( 1, $warnings, $html );
		$this->assertStringContainsString( 'ws:// to agent.example, another machine', $warnings[0] );
		$this->assertStringContainsString( 'unencrypted', $warnings[0] );
		$this->assertStringContainsString( 'Unsafe: The agent URL is ws:// to agent.example', self::security_cell( $html ) );

		foreach ( array( 'ws://10.0.0.5:8765/v1/stream', 'ws://[2001:db8::1]:8765/v1/stream', 'ws://127.0.0.1.attacker.example/v1/stream' ) as $url ) {
			WooBrevo_Settings::set( 'agent_url', $url );
			$this->assertCount( 1, self::warnings( $this->render() ), $url );
		}
		// The loopback crosses no network: no warning, and the panel says why.
		foreach ( array( 'ws://127.0.0.1:8765/v1/stream', 'ws://127.9.9.9:8765/v1/stream', 'ws://localhost:8765/v1/stream', 'ws://[::1]:8765/v1/stream' ) as $url ) {
			WooBrevo_Settings::set( 'agent_url', $url );
			$html = $this->render();
			$this->assertSame( array(), self::warnings( $html ), $url );
			$this->assertSame( 'unencrypted, on this machine only (loopback)', self::security_cell( $html ), $url );
		}
	}

	public function test_finding_7_certificate_verification_off_is_warned_on_the_screen_and_in_the_status_panel(): void {
		wp_set_current_user( $this->shop_manager() ); // Whoever sees the screen sees it.
		$html = $this->render();
		$this->assertSame( array(), self::warnings( $html ) );
		$this->assertSame( "encrypted (wss://), the agent's certificate verified", html_entity_decode( self::security_cell( $html ), ENT_QUOTES ) );

		WooBrevo_Settings::set( 'tls_verify', '0' );
		$html     = $this->render();
		$warnings = self::warnings( $html );
		$this->assertCount( 1, $warnings );
		$this->assertStringContainsString( "The agent's certificate is not verified", $warnings[0] );
		$this->assertStringContainsString( "Tick \"Verify the agent's certificate\"", $warnings[0] );
		$this->assertStringContainsString( 'Unsafe:', self::security_cell( $html ) );
		$this->assertStringContainsString( 'certificate is not verified', html_entity_decode( self::security_cell( $html ), ENT_QUOTES ) );

		// Both at once on a ws:// URL to another machine is one warning: ws:// has no certificate.
		WooBrevo_Settings::set( 'agent_url', 'ws://agent.example:8765/v1/stream' );
		$this->assertCount( 1, self::warnings( $this->render() ) );
	}

	public function test_finding_7_origins_and_loopback_hosts(): void {
		$this->assertSame( 'wss://agent.example:443', WooBrevo_Settings::agent_origin( 'wss://Agent.Example/v1/stream' ) );
		$this->assertSame( 'ws://agent.example:80', WooBrevo_Settings::agent_origin( 'ws://agent.example/x' ) );
		$this->assertSame( 'ws://[::1]:8765', WooBrevo_Settings::agent_origin( 'ws://[::1]:8765/v1/stream' ) );
		$this->assertSame( '', WooBrevo_Settings::agent_origin( '' ) );
		foreach ( array( 'localhost', 'LOCALHOST', 'agent.localhost', '127.0.0.1', '127.255.0.7', '[::1]', '::1' ) as $host ) {
			$this->assertTrue( WooBrevo_Settings::is_loopback_host( $host ), $host );
		}
		foreach ( array( 'agent.example', '10.0.0.1', '0.0.0.0', '128.0.0.1', '[::2]', 'localhost.example', '127.0.0.1.nip.io' ) as $host ) {
			$this->assertFalse( WooBrevo_Settings::is_loopback_host( $host ), $host );
		}
	}
}
