<?php
/**
 * Abandoned carts in WordPress with WooCommerce's cart: snapshots for logged-in shoppers and
 * guests (the e-mail through the classic checkout's endpoint, and through the Store API's
 * update-customer route as the block checkout sends it), nothing for an unchanged cart, the
 * restore link, the settings.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Carts
 * @covers WooBrevo_Payloads
 */
final class CartsCaptureTest extends WooBrevo_TestCase {

	protected function setUp(): void {
		parent::setUp();
		if ( null === WC()->cart ) {
			wc_load_cart();
		}
		WC()->cart->empty_cart();
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null );
		WC()->session->set( WooBrevo_Carts::SESSION_EMAIL, null );
		wc_clear_notices();
		$this->clear_outbox();
	}

	protected function tearDown(): void {
		WC()->cart->empty_cart();
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null );
		WC()->session->set( WooBrevo_Carts::SESSION_EMAIL, null );
		wc_clear_notices();
		parent::tearDown();
	}

	/** The plugin's own capture instance's behaviour, through hooks only. */
	private function carts(): WooBrevo_Carts {
		return new WooBrevo_Carts();
	}

	private function shopper(): int {
		$customer = $this->make_customer( 'carol@example.com' );
		wp_set_current_user( $customer->get_id() );
		$this->clear_outbox();
		return $customer->get_id();
	}

	private function snapshot_of( array $row ): array {
		$payload = ( new WooBrevo_Payloads() )->build(
			array(
				'resource'    => $row['resource'],
				'resource_id' => $row['resource_id'],
				'topic'       => $row['topic'],
				'extra'       => $row['extra'],
			),
			array()
		);
		$this->assertIsArray( $payload );
		return $payload;
	}

	private function email_request( string $email, string $nonce ): WP_REST_Response {
		$request = new WP_REST_Request( 'POST', '/' . WooBrevo_Carts::REST_NAMESPACE . WooBrevo_Carts::REST_ROUTE );
		$request->set_body_params(
			array(
				'email' => $email,
				'nonce' => $nonce,
			)
		);
		return rest_do_request( $request );
	}

	/** POST /wc/store/v1/cart/update-customer as the block checkout sends it: JSON body, `Nonce` header. */
	private function store_api_update_customer( string $email, ?string $nonce ): WP_REST_Response {
		$request = new WP_REST_Request( 'POST', '/wc/store/v1/cart/update-customer' );
		$request->set_header( 'Content-Type', 'application/json' );
		if ( null !== $nonce ) {
			$request->set_header( 'Nonce', $nonce );
		}
		$request->set_body( (string) wp_json_encode( array( 'billing_address' => array( 'email' => $email ) ) ) );
		return rest_do_request( $request );
	}

	private function token_of( array $snapshot ): string {
		parse_str( (string) wp_parse_url( $snapshot['restore_url'], PHP_URL_QUERY ), $query );
		return (string) $query[ WooBrevo_Carts::QUERY_ARG ];
	}

	public function test_logged_in_cart_snapshot(): void {
		$user_id = $this->shopper();
		$cap     = $this->make_product( 'Cap', '10' );
		WC()->cart->add_to_cart( $cap->get_id(), 2 );

		$rows = $this->rows( 'cart' );
		$this->assertCount( 1, $rows );
		$this->assertSame( 'cart.updated', $rows[0]['topic'] );
		$snapshot = $this->snapshot_of( $rows[0] );
		$this->assertSame( $rows[0]['resource_id'], $snapshot['id'] );
		$this->assertMatchesRegularExpression( '/^[0-9a-f]{32}$/', $snapshot['token'] );
		$this->assertSame( 'carol@example.com', $snapshot['email'] );
		$this->assertSame( $user_id, $snapshot['customer_id'] );
		$this->assertSame( $cap->get_id(), $snapshot['items'][0]['product_id'] );
		$this->assertSame( 0, $snapshot['items'][0]['variation_id'] );
		$this->assertSame( 'Cap', $snapshot['items'][0]['name'] );
		$this->assertSame( 2, $snapshot['items'][0]['quantity'] );
		$this->assertSame( '10.00', $snapshot['items'][0]['price'] );
		$this->assertSame( get_permalink( $cap->get_id() ), $snapshot['items'][0]['url'] );
		$this->assertSame( '20.00', $snapshot['totals']['subtotal'] );
		$this->assertSame( get_woocommerce_currency(), $snapshot['currency'] );
		$this->assertSame( get_locale(), $snapshot['locale'] );
		$this->assertSame( array(), $snapshot['coupons'] );
		$this->assertStringStartsWith( home_url( '/' ) . '?woobrevo_restore=', $snapshot['restore_url'] );
		$this->assertSame( $snapshot['id'], WooBrevo_Carts::verify( $this->token_of( $snapshot ), WooBrevo_Carts::secret(), time() ) );
		$this->assertMatchesRegularExpression( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/', $snapshot['date_modified_gmt'] );
	}

	public function test_unchanged_cart_reloaded_20_times_writes_nothing(): void {
		$this->shopper();
		$cap = $this->make_product( 'Cap', '10' );
		$key = WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->assertCount( 1, $this->rows( 'cart' ) );
		for ( $i = 0; $i < 20; $i++ ) {
			$this->new_request();
			WC()->cart->calculate_totals(); // Fires woocommerce_cart_updated, as every page view does.
			do_action( 'woocommerce_cart_updated' );
		}
		$this->assertCount( 1, $this->rows( 'cart' ), 'no row for an unchanged cart' );

		$this->new_request();
		WC()->cart->set_quantity( $key, 3 );
		$rows = $this->rows( 'cart' );
		$this->assertCount( 2, $rows );
		$this->assertSame( $rows[0]['resource_id'], $rows[1]['resource_id'], 'the same cart' );
		$this->assertSame( 3, $this->snapshot_of( $rows[1] )['items'][0]['quantity'] );
	}

	public function test_guest_cart_waits_for_the_email_from_the_classic_checkout(): void {
		$cap = $this->make_product( 'Cap', '10' );
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->assertSame( array(), $this->rows( 'cart' ), 'a guest without an e-mail is not captured' );

		$refused = $this->email_request( 'dave@example.com', 'not-a-nonce' );
		$this->assertSame( 401, $refused->get_status(), "a guest with a bad nonce" );
		$this->assertSame( array(), $this->rows( 'cart' ) );

		$response = $this->email_request( 'dave@example.com', wp_create_nonce( WooBrevo_Carts::NONCE_ACTION ) );
		$this->assertSame( 200, $response->get_status() );
		$this->assertSame( array( 'captured' => true ), $response->get_data() );
		$rows = $this->rows( 'cart' );
		$this->assertCount( 1, $rows );
		$snapshot = $this->snapshot_of( $rows[0] );
		$this->assertSame( 'dave@example.com', $snapshot['email'] );
		$this->assertSame( 0, $snapshot['customer_id'] );

		$this->new_request();
		$this->email_request( 'dave@example.com', wp_create_nonce( WooBrevo_Carts::NONCE_ACTION ) );
		$this->assertCount( 1, $this->rows( 'cart' ), 'the same e-mail again changes nothing' );
		$this->assertSame( array( 'captured' => false ), $this->email_request( 'not an e-mail', wp_create_nonce( WooBrevo_Carts::NONCE_ACTION ) )->get_data() );
	}

	public function test_guest_email_from_the_block_checkout(): void {
		$cap = $this->make_product( 'Cap', '10' );
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$customer = new WC_Customer();
		$customer->set_billing_email( 'erin@example.com' );
		do_action( 'woocommerce_store_api_cart_update_customer_from_request', $customer, new WP_REST_Request( 'POST', '/wc/store/v1/cart/update-customer' ) );
		$rows = $this->rows( 'cart' );
		$this->assertCount( 1, $rows );
		$this->assertSame( 'erin@example.com', $this->snapshot_of( $rows[0] )['email'] );
	}

	/**
	 * The block checkout as a browser drives it: a Store API request with the e-mail in
	 * billing_address and the Nonce header the checkout page carries (wc_store_api).
	 */
	public function test_guest_email_through_the_store_api_update_customer_route(): void {
		$cap = $this->make_product( 'Cap', '10' );
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->assertSame( array(), $this->rows( 'cart' ) );

		$this->assertSame( 401, $this->store_api_update_customer( 'fay@example.com', null )->get_status(), 'no Nonce header' );
		$this->assertSame( 403, $this->store_api_update_customer( 'fay@example.com', 'not-a-nonce' )->get_status(), 'a forged Nonce header' );
		$this->assertSame( array(), $this->rows( 'cart' ) );

		$response = $this->store_api_update_customer( 'fay@example.com', wp_create_nonce( 'wc_store_api' ) );
		$cart     = json_decode( (string) wp_json_encode( $response->get_data() ), true ); // The Store API's objects, as the browser reads them.
		$this->assertSame( 200, $response->get_status(), (string) wp_json_encode( $cart ) );
		$this->assertSame( 'fay@example.com', $cart['billing_address']['email'] );
		$rows = $this->rows( 'cart' );
		$this->assertCount( 1, $rows );
		$this->assertSame( 'cart.updated', $rows[0]['topic'] );
		$snapshot = $this->snapshot_of( $rows[0] );
		$this->assertSame( 'fay@example.com', $snapshot['email'] );
		$this->assertSame( 0, $snapshot['customer_id'] );
		$this->assertSame( $cap->get_id(), $snapshot['items'][0]['product_id'] );
	}

	public function test_guest_capture_switched_off_writes_nothing_for_guests(): void {
		WooBrevo_Settings::set( 'guest_carts', '0' );
		$cap = $this->make_product( 'Cap', '10' );
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->email_request( 'dave@example.com', wp_create_nonce( WooBrevo_Carts::NONCE_ACTION ) );
		$customer = new WC_Customer();
		$customer->set_billing_email( 'erin@example.com' );
		do_action( 'woocommerce_store_api_cart_update_customer_from_request', $customer, new WP_REST_Request( 'POST', '/wc/store/v1/cart/update-customer' ) );
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->assertSame( array(), $this->rows( 'cart' ) );

		WC()->cart->empty_cart();
		$this->shopper();
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->assertCount( 1, $this->rows( 'cart' ), 'logged-in shoppers are still captured' );
	}

	public function test_agent_switching_carts_off_writes_nothing(): void {
		WooBrevo_Settings::set( 'carts_enabled', '0' );
		$this->shopper();
		WC()->cart->add_to_cart( $this->make_product( 'Cap', '10' )->get_id(), 1 );
		$this->assertSame( array(), $this->rows( 'cart' ) );
	}

	public function test_emptied_cart_and_order_end_the_cart(): void {
		$this->shopper();
		$cap = $this->make_product( 'Cap', '10' );
		$key = WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$this->new_request();
		WC()->cart->remove_cart_item( $key );
		$rows = $this->rows( 'cart' );
		$this->assertSame( array( 'cart.updated', 'cart.emptied' ), array_column( $rows, 'topic' ) );
		$emptied = $this->snapshot_of( $rows[1] );
		$this->assertSame( $cap->get_id(), $emptied['items'][0]['product_id'], 'an emptied cart ships its last items' );
		$this->assertArrayNotHasKey( 'order_id', $emptied );

		$this->new_request();
		WC()->cart->add_to_cart( $cap->get_id(), 2 );
		$this->new_request();
		do_action( 'woocommerce_checkout_order_processed', 456, array(), null );
		WC()->cart->empty_cart();
		$rows = $this->rows( 'cart' );
		$this->assertSame( array( 'cart.updated', 'cart.emptied', 'cart.updated', 'cart.emptied' ), array_column( $rows, 'topic' ) );
		$this->assertNotSame( $rows[0]['resource_id'], $rows[2]['resource_id'], 'an emptied cart ends: the next is a new cart' );
		$this->assertSame( $rows[2]['resource_id'], $rows[3]['resource_id'] );
		$ordered = $this->snapshot_of( $rows[3] );
		$this->assertSame( 456, $ordered['order_id'] );
		$this->assertSame( 2, $ordered['items'][0]['quantity'], 'the order keeps the last items' );
	}

	public function test_block_checkout_order_ends_the_cart(): void {
		$this->shopper();
		WC()->cart->add_to_cart( $this->make_product( 'Cap', '10' )->get_id(), 1 );
		$order = wc_create_order( array( 'customer_id' => get_current_user_id() ) );
		$this->clear_outbox();
		do_action( 'woocommerce_store_api_checkout_order_processed', $order );
		$rows = $this->rows( 'cart' );
		$this->assertSame( array( 'cart.emptied' ), array_column( $rows, 'topic' ) );
		$this->assertSame( $order->get_id(), $this->snapshot_of( $rows[0] )['order_id'] );
	}

	public function test_empty_cart_page_views_write_nothing(): void {
		$this->shopper();
		for ( $i = 0; $i < 3; $i++ ) {
			$this->new_request();
			WC()->cart->calculate_totals();
		}
		$this->assertSame( array(), $this->rows( 'cart' ) );
		$this->assertNull( WC()->session->get( WooBrevo_Carts::SESSION_STATE ), 'no session data for an empty cart never captured' );
	}

	public function test_a_known_cart_in_a_new_session_writes_nothing(): void {
		$this->shopper();
		WC()->cart->add_to_cart( $this->make_product( 'Cap', '10' )->get_id(), 1 );
		$this->assertCount( 1, $this->rows( 'cart' ) );
		$this->new_request();
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null ); // Another device, the same persistent cart.
		WC()->cart->calculate_totals();
		$this->assertCount( 1, $this->rows( 'cart' ) );
		$this->assertIsArray( WC()->session->get( WooBrevo_Carts::SESSION_STATE ) );
	}

	public function test_restore_link_rebuilds_the_cart(): void {
		$cap    = $this->make_product( 'Cap', '10' );
		$scarf  = $this->make_product( 'Scarf', '20' );
		$gloves = $this->make_product( 'Gloves', '15' );
		$coupon = new WC_Coupon();
		$coupon->set_code( 'save10' );
		$coupon->set_discount_type( 'percent' );
		$coupon->set_amount( '10' );
		$coupon->save();
		$this->shopper();
		WC()->cart->add_to_cart( $cap->get_id(), 2 );
		WC()->cart->add_to_cart( $scarf->get_id(), 1 );
		WC()->cart->add_to_cart( $gloves->get_id(), 1 );
		WC()->cart->apply_coupon( 'save10' );
		$rows     = $this->rows( 'cart' );
		$snapshot = $this->snapshot_of( end( $rows ) );
		$this->assertSame( array( 'save10' ), $snapshot['coupons'] );

		// Later, in another browser (a guest's, with an empty cart): the scarf is gone, the gloves are sold out.
		$scarf->delete();
		$gloves->set_stock_status( 'outofstock' );
		$gloves->save();
		wp_set_current_user( 0 );
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null );
		WC()->cart->empty_cart();
		wc_clear_notices();
		$this->clear_outbox();

		$to = $this->carts()->restore( $this->token_of( $snapshot ) );
		$this->assertSame( wc_get_cart_url(), $to );
		$items = array_values( WC()->cart->get_cart() );
		$this->assertCount( 1, $items );
		$this->assertSame( $cap->get_id(), (int) $items[0]['product_id'] );
		$this->assertSame( 2, (int) $items[0]['quantity'] );
		$this->assertSame( array( 'save10' ), WC()->cart->get_applied_coupons() );
		$notices = implode( "\n", array_column( wc_get_notices( 'notice' ), 'notice' ) );
		$this->assertStringContainsString( 'Scarf', $notices );
		$this->assertStringContainsString( 'Gloves', $notices );
		$this->assertSame( array(), wc_get_notices( 'error' ) );
		$this->assertSame( array( array( 'cart.restored', $snapshot['id'] ) ), $this->topics( 'cart' ) );
		$this->assertSame( 'carol@example.com', WC()->session->get( WooBrevo_Carts::SESSION_EMAIL ), 'the guest browser now knows the e-mail' );
		$restored = $this->snapshot_of( $this->rows( 'cart' )[0] );
		$this->assertCount( 1, $restored['items'] );

		$this->new_request();
		WC()->cart->calculate_totals();
		$this->assertCount( 1, $this->rows( 'cart' ), 'the restored cart is the session cart: unchanged, no row' );
	}

	public function test_forged_altered_and_expired_links_are_refused(): void {
		$this->shopper();
		$cap = $this->make_product( 'Cap', '10' );
		WC()->cart->add_to_cart( $cap->get_id(), 1 );
		$id     = $this->rows( 'cart' )[0]['resource_id'];
		$valid  = WooBrevo_Carts::sign( $id, time() + 3600, WooBrevo_Carts::secret() );
		$parts  = explode( '.', $valid );
		$before = WC()->cart->get_cart_hash();
		$this->clear_outbox();
		$links = array(
			'forged'  => WooBrevo_Carts::sign( $id, time() + 3600, str_repeat( 'a', 64 ) ),
			'altered' => explode( '.', WooBrevo_Carts::sign( $id + 1, time() + 3600, 'x' ) )[0] . '.' . $parts[1],
			'expired' => WooBrevo_Carts::sign( $id, time() - 1, WooBrevo_Carts::secret() ),
			'garbage' => 'hello',
		);
		foreach ( $links as $name => $token ) {
			wc_clear_notices();
			$this->assertNull( $this->carts()->restore( $token ), $name );
			$this->assertSame( array( 'This cart link is not valid or has expired.' ), array_column( wc_get_notices( 'error' ), 'notice' ), $name );
			$this->assertSame( $before, WC()->cart->get_cart_hash(), $name . ': the cart is untouched' );
		}
		$this->assertSame( array(), $this->rows( 'cart' ) );
	}

	public function test_welcome_settings_are_stored(): void {
		WooBrevo_Carts::remember_settings( WooBrevo_Protocol::parse( '{"type":"welcome","carts":{"enabled":false,"link_lifetime":3600}}' )['carts'] );
		$this->assertFalse( WooBrevo_Carts::enabled() );
		$this->assertSame( 3600, WooBrevo_Settings::get( 'cart_link_lifetime' ) );
		WooBrevo_Carts::remember_settings( WooBrevo_Protocol::parse( '{"type":"welcome"}' )['carts'] );
		$this->assertTrue( WooBrevo_Carts::enabled(), 'an older agent: carts captured' );
		$this->assertSame( 604800, WooBrevo_Settings::get( 'cart_link_lifetime' ) );
	}

	public function test_the_link_is_followed_on_wp_loaded(): void {
		$this->shopper();
		WC()->cart->add_to_cart( $this->make_product( 'Cap', '10' )->get_id(), 1 );
		$id = $this->rows( 'cart' )[0]['resource_id'];
		wp_set_current_user( 0 ); // Another browser, a guest's, with an empty cart.
		WC()->session->set( WooBrevo_Carts::SESSION_STATE, null );
		WC()->cart->empty_cart();
		$redirects = array();
		$catch     = static function ( $location ) use ( &$redirects ) {
			$redirects[] = $location;
			return false; // wp_safe_redirect() then returns false: no exit.
		};
		add_filter( 'wp_redirect', $catch );
		$screen = $GLOBALS['current_screen'] ?? null;
		unset( $GLOBALS['current_screen'] ); // The storefront: an admin screen set by an earlier test would make is_admin() true.
		try {
			$this->assertFalse( is_admin() );
			$_GET[ WooBrevo_Carts::QUERY_ARG ] = 'garbage';
			do_action( 'wp_loaded' );
			$this->assertSame( array(), $redirects, 'a refused link stays on the page, with its notice' );
			$this->assertCount( 1, wc_get_notices( 'error' ) );

			$_GET[ WooBrevo_Carts::QUERY_ARG ] = WooBrevo_Carts::sign( $id, time() + 60, WooBrevo_Carts::secret() );
			do_action( 'wp_loaded' );
			$this->assertSame( array( wc_get_cart_url() ), $redirects );
			$this->assertCount( 1, WC()->cart->get_cart() );
		} finally {
			remove_filter( 'wp_redirect', $catch );
			if ( null !== $screen ) {
				$GLOBALS['current_screen'] = $screen;
			}
		}
	}

	public function test_restore_link_lifetime_follows_the_agent(): void {
		WooBrevo_Carts::remember_settings( array( 'enabled' => true, 'link_lifetime' => 3600 ) );
		$url = WooBrevo_Carts::restore_url( 7, 1000000 );
		parse_str( (string) wp_parse_url( $url, PHP_URL_QUERY ), $query );
		$token = (string) $query[ WooBrevo_Carts::QUERY_ARG ];
		$this->assertSame( 7, WooBrevo_Carts::verify( $token, WooBrevo_Carts::secret(), 1003600 ) );
		$this->assertNull( WooBrevo_Carts::verify( $token, WooBrevo_Carts::secret(), 1003601 ) );
	}

	public function test_checkout_script_only_for_guests_on_the_checkout(): void {
		$carts = $this->carts();
		$carts->action_wp_enqueue_scripts();
		$this->assertFalse( wp_script_is( 'woobrevo-cart-email', 'enqueued' ), 'not outside the checkout' );
		add_filter( 'woocommerce_is_checkout', '__return_true' );
		try {
			$carts->action_wp_enqueue_scripts();
			$this->assertTrue( wp_script_is( 'woobrevo-cart-email', 'enqueued' ) );
			$data = (string) wp_scripts()->get_data( 'woobrevo-cart-email', 'data' );
			$this->assertStringContainsString( 'woobrevo\/v1\/cart-email', $data );
		} finally {
			remove_filter( 'woocommerce_is_checkout', '__return_true' );
			wp_dequeue_script( 'woobrevo-cart-email' );
			wp_deregister_script( 'woobrevo-cart-email' );
		}
	}

	public function test_settings_screen_saves_guest_capture(): void {
		wp_set_current_user( $this->admin_id() );
		$_POST = array(
			'_wpnonce'                   => wp_create_nonce( 'woobrevo_save' ),
			WooBrevo_Options::AGENT_URL  => '',
			WooBrevo_Options::TLS_VERIFY => '1',
		);
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( '0', WooBrevo_Settings::get( 'guest_carts' ) );
		$_POST[ WooBrevo_Options::GUEST_CARTS ] = '1';
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( '1', WooBrevo_Settings::get( 'guest_carts' ) );
	}
}
