<?php
/**
 * Multisite carts: each site has its own carts table and its own restore-link secret.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Carts
 * @covers WooBrevo_Schema
 */
final class NetworkCartsTest extends WooBrevo_TestCase {

	protected function setUp(): void {
		parent::setUp();
		if ( null === WC()->cart ) {
			wc_load_cart();
		}
		WC()->cart->empty_cart();
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null );
	}

	protected function tearDown(): void {
		WC()->cart->empty_cart();
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null );
		parent::tearDown();
	}

	public function test_each_site_has_its_own_table_and_secret(): void {
		global $wpdb;
		$secret_1 = WooBrevo_Carts::secret();
		$token    = WooBrevo_Carts::sign( 1, time() + 3600, $secret_1 );
		$this->assertSame( 'wp_woobrevo_carts', WooBrevo_Schema::carts_table() );
		switch_to_blog( 2 );
		$this->assertSame( 'wp_2_woobrevo_carts', WooBrevo_Schema::carts_table() );
		$this->assertSame( array( 'wp_2_woobrevo_carts' ), $wpdb->get_col( "SHOW TABLES LIKE 'wp\\_2\\_woobrevo\\_carts'" ) );
		$secret_2 = WooBrevo_Carts::secret();
		$this->assertMatchesRegularExpression( '/^[0-9a-f]{64}$/', $secret_2 );
		$this->assertNotSame( $secret_1, $secret_2 );
		$this->assertNull( WooBrevo_Carts::verify( $token, $secret_2, time() ), "site 1's link is not valid on site 2" );
		restore_current_blog();
		$this->assertSame( 1, WooBrevo_Carts::verify( $token, WooBrevo_Carts::secret(), time() ) );
	}

	public function test_a_cart_on_site_2_is_written_to_its_table(): void {
		global $wpdb;
		$before = (int) $wpdb->get_var( 'SELECT COUNT(*) FROM wp_woobrevo_carts' );
		switch_to_blog( 2 );
		$user = $this->make_customer( 'multi@example.com' );
		wp_set_current_user( $user->get_id() );
		$product = $this->make_product( 'Site 2 cap', '9' );
		$this->new_request();
		WC()->cart->add_to_cart( $product->get_id(), 1 );
		$rows = $this->rows( 'cart' );
		$this->assertSame( 'cart.updated', end( $rows )['topic'] );
		$snapshot = WooBrevo_Carts::stored_snapshot( (int) end( $rows )['resource_id'] );
		$this->assertSame( 'multi@example.com', $snapshot['email'] );
		$this->assertStringStartsWith( home_url( '/' ), $snapshot['restore_url'] );
		restore_current_blog();
		$this->assertSame( $before, (int) $wpdb->get_var( 'SELECT COUNT(*) FROM wp_woobrevo_carts' ), 'site 1 table untouched' );
	}
}
