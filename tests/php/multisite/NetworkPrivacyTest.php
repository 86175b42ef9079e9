<?php
/**
 * Multisite personal data: an erasure on a site goes to that site's own outbox (its agent token),
 * with that site's erasure ids, and removes that site's carts; the other site is untouched.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Privacy
 */
final class NetworkPrivacyTest extends WooBrevo_TestCase {

	private const EMAIL = 'network.erase@example.com';

	private function add_cart( string $email ): int {
		global $wpdb;
		$wpdb->insert(
			WooBrevo_Schema::carts_table(),
			array(
				'token'       => md5( 'network-cart' . wp_rand() ),
				'session_key' => 'guest-' . wp_rand(),
				'email'       => $email,
				'snapshot'    => wp_json_encode( array( 'email' => $email ) ),
			)
		);
		return (int) $wpdb->insert_id;
	}

	private function erase(): array {
		$erasers = apply_filters( 'wp_privacy_personal_data_erasers', array() );
		return call_user_func( $erasers['woobrevo']['callback'], self::EMAIL, 1 );
	}

	public function test_erasure_on_site_2_uses_site_2s_outbox_and_carts(): void {
		global $wpdb;
		$this->clear_outbox();
		$cart_1 = $this->add_cart( self::EMAIL );
		switch_to_blog( 2 );
		$this->clear_outbox();
		$cart_2 = $this->add_cart( self::EMAIL );
		( new WooBrevo_Outbox() )->add( 'cart', $cart_2, 'updated' );
		$this->new_request();
		$response = $this->erase();
		$this->assertTrue( $response['done'] );
		$this->assertSame( array( array( 'privacy.erase', 1 ) ), $this->topics() );
		$this->assertSame( self::EMAIL, $this->rows()[0]['extra']['email'] );
		$this->assertSame( 0, (int) $wpdb->get_var( $wpdb->prepare( 'SELECT COUNT(*) FROM ' . WooBrevo_Schema::carts_table() . ' WHERE id = %d', $cart_2 ) ) ); // phpcs:ignore
		$this->assertSame( '1', (string) get_option( WooBrevo_Options::ERASURE_SEQ ) );
		restore_current_blog();

		$this->assertSame( array(), $this->topics(), 'site 1\'s outbox is untouched' );
		$this->assertSame( 1, (int) $wpdb->get_var( $wpdb->prepare( 'SELECT COUNT(*) FROM ' . WooBrevo_Schema::carts_table() . ' WHERE id = %d', $cart_1 ) ) ); // phpcs:ignore
		$this->assertFalse( get_option( WooBrevo_Options::ERASURE_SEQ ) );

		// Site 1's own erasure: its own id sequence and its own outbox.
		$this->erase();
		$this->assertSame( array( array( 'privacy.erase', 1 ) ), $this->topics() );
		$this->assertSame( 0, (int) $wpdb->get_var( $wpdb->prepare( 'SELECT COUNT(*) FROM ' . WooBrevo_Schema::carts_table() . ' WHERE id = %d', $cart_1 ) ) ); // phpcs:ignore
	}
}
