<?php
/**
 * Payloads: the REST v3 body from the routes (the double's, or real WooCommerce's), shaped like
 * recorded real WooCommerce 10.0.2 objects, with protected meta and customer totals.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Payloads
 */
final class PayloadsTest extends WooBrevo_TestCase {

	/**
	 * Keys of the recorded WooCommerce 10.0.2 bodies that a real WooCommerce 7.x does not send
	 * (product: brands, post_password, global_unique_id; variation: type, global_unique_id, name and
	 * parent_id). Checked on a real WooCommerce 7.9.0 (docs/plugin-testing.md).
	 */
	private const NEWER_KEYS = array(
		'product'   => array( 'brands', 'post_password', 'global_unique_id' ),
		'variation' => array( 'type', 'global_unique_id', 'name', 'parent_id' ),
	);

	private function reference( string $file ): array {
		return json_decode( (string) file_get_contents( WOOBREVO_TESTS_DIR . '/wc-double/templates/' . $file . '.json' ), true );
	}

	/**
	 * The body has the keys of the recorded real WooCommerce 10.0.2 body, in its order. A real
	 * WooCommerce older than 10.0.2 may lack the keys later releases added (NEWER_KEYS), nothing else.
	 */
	private function assert_reference_keys( string $resource, array $body ): void {
		$expected = array_keys( $this->reference( $resource ) );
		if ( 'order' === $resource ) {
			// Minimization (issue 14): the payment fields never ship.
			$expected = array_values( array_diff( $expected, WooBrevo_Payloads::PAYMENT_FIELDS ) );
		}
		if ( version_compare( WC_VERSION, '10.0.2', '<' ) ) {
			$absent   = array_diff( self::NEWER_KEYS[ $resource ] ?? array(), array_keys( $body ) );
			$expected = array_values( array_diff( $expected, $absent ) );
		}
		$this->assertSame( $expected, array_keys( $body ), $resource . ' body keys (WooCommerce ' . WC_VERSION . ')' );
	}

	private function row( string $resource, int $id, string $action = 'updated', array $extra = array() ): array {
		return array(
			'resource'    => $resource,
			'resource_id' => $id,
			'topic'       => $resource . '.' . $action,
			'extra'       => $extra,
		);
	}

	protected function setUp(): void {
		parent::setUp();
		WooBrevo_Settings::set( 'payload_user', $this->admin_id() );
	}

	public function test_customer_body_has_every_rest_key_plus_counts_and_protected_meta(): void {
		$customer = $this->make_customer();
		update_user_meta( $customer->get_id(), 'loyalty_points', '120' );
		update_user_meta( $customer->get_id(), '_brevo_hidden', 'hidden' );
		$product = $this->make_product( 'Tee', '10.00' );
		$order   = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->add_product( $product, 2 );
		$order->calculate_totals();
		$order->save();
		$order->update_status( 'completed' );

		$body = ( new WooBrevo_Payloads() )->build( $this->row( 'customer', $customer->get_id() ), array( 'customer' => array( 'loyalty_points', '_brevo_hidden' ) ) );
		foreach ( array_keys( $this->reference( 'customer' ) ) as $key ) {
			$this->assertArrayHasKey( $key, $body );
		}
		$this->assertSame( $customer->get_id(), $body['id'] );
		$this->assertSame( 'alice@example.com', $body['email'] );
		$this->assertSame( '+33612345678', $body['billing']['phone'] );
		$this->assertSame( 1, $body['orders_count'] );
		$this->assertSame( '20.00', $body['total_spent'] );
		$meta = array_column( $body['meta_data'], 'value', 'key' );
		$this->assertSame( '120', $meta['loyalty_points'] );
		$this->assertSame( 'hidden', $meta['_brevo_hidden'] );
		$this->assertStringEndsWith( '/wc/v3/customers/' . $customer->get_id(), $body['_links']['self'][0]['href'] );
	}

	public function test_a_customer_body_is_the_same_before_and_after_woocommerce_caches_its_counts(): void {
		$customer = $this->make_customer();
		$order    = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->set_total( '12.00' );
		$order->save();
		$order->update_status( 'completed' );
		$payloads = new WooBrevo_Payloads();
		$first    = $payloads->build( $this->row( 'customer', $customer->get_id() ), array() );
		wp_cache_flush();
		$second = $payloads->build( $this->row( 'customer', $customer->get_id() ), array() );
		$this->assertSame( wp_json_encode( $first ), wp_json_encode( $second ) );
		$this->assertSame( 1, $second['orders_count'] );
		$this->assertSame( '12.00', $second['total_spent'] );
		$keys = array_column( array_map( static fn( $m ) => $m instanceof JsonSerializable ? $m->jsonSerialize() : $m, $second['meta_data'] ), 'key' );
		$this->assertSame( array(), preg_grep( '/^wc_(order_count|money_spent)_/', $keys ), 'WooCommerce\'s own count caches are not shipped' );
	}

	public function test_order_body_matches_the_reference_shape(): void {
		$product = $this->make_product( 'Blue T-Shirt', '17.99' );
		$order   = wc_create_order();
		$order->add_product( $product, 2 );
		$order->set_billing_email( 'guest@example.com' );
		$order->calculate_totals();
		$order->update_meta_data( '_brevo_test', 'o1' );
		$order->save();
		$order->update_status( 'processing' );
		$body = ( new WooBrevo_Payloads() )->build( $this->row( 'order', $order->get_id() ), array( 'order' => array( '_brevo_test' ) ) );
		$this->assert_reference_keys( 'order', $body );
		$this->assertSame( 'processing', $body['status'] );
		$this->assertSame( '35.98', $body['total'] );
		$this->assertSame( 'guest@example.com', $body['billing']['email'] );
		$this->assertSame( 2, $body['line_items'][0]['quantity'] );
		$this->assertSame( array( '_brevo_test' ), array_values( array_intersect( array_column( $body['meta_data'], 'key' ), array( '_brevo_test' ) ) ), 'present once' );
	}

	public function test_product_variation_and_coupon_bodies(): void {
		$parent = new WC_Product_Variable();
		$parent->set_name( 'Hoodie' );
		$parent->save();
		$variation = new WC_Product_Variation();
		$variation->set_parent_id( $parent->get_id() );
		$variation->set_attributes( array( 'size' => 'S' ) );
		$variation->set_regular_price( '30' );
		$variation->save();
		$coupon = new WC_Coupon();
		$coupon->set_code( 'WELCOME10' );
		$coupon->set_amount( '10' );
		$coupon->set_discount_type( 'percent' );
		$coupon->save();
		$payloads = new WooBrevo_Payloads();

		$product = $payloads->build( $this->row( 'product', $parent->get_id() ), array() );
		$this->assert_reference_keys( 'product', $product );
		$this->assertSame( 'variable', $product['type'] );
		$this->assertSame( array( $variation->get_id() ), $product['variations'] );

		$body = $payloads->build( $this->row( 'variation', $variation->get_id() ), array() );
		$this->assert_reference_keys( 'variation', $body );
		// Older wc/v3 variation bodies have no parent_id; the agent then reads the parent from _links.up.
		$this->assertStringEndsWith( '/wc/v3/products/' . $parent->get_id() . '/variations/' . $variation->get_id(), $body['_links']['self'][0]['href'] );
		$this->assertStringEndsWith( '/wc/v3/products/' . $parent->get_id(), $body['_links']['up'][0]['href'] );
		if ( version_compare( WC_VERSION, '10.0.2', '>=' ) ) {
			$this->assertSame( $parent->get_id(), $body['parent_id'] );
		}
		$this->assertSame( '30', $body['regular_price'] );

		$body = $payloads->build( $this->row( 'coupon', $coupon->get_id() ), array() );
		$this->assert_reference_keys( 'coupon', $body );
		$this->assertSame( 'welcome10', $body['code'] );
		$this->assertSame( 'percent', $body['discount_type'] );
	}

	public function test_deleted_ships_the_id_and_vanished_is_null(): void {
		$payloads = new WooBrevo_Payloads();
		$this->assertSame( array( 'id' => 5 ), $payloads->build( $this->row( 'order', 5, 'deleted' ), array() ) );
		$this->assertSame( array( 'id' => 6, 'parent_id' => 4 ), $payloads->build( $this->row( 'variation', 6, 'deleted', array( 'parent_id' => 4 ) ), array() ) );
		$this->assertNull( $payloads->build( $this->row( 'order', 999999 ), array() ) );
		$this->assertNull( $payloads->build( $this->row( 'customer', 999999 ), array() ) );
	}

	public function test_a_payload_user_without_read_access_is_an_error_not_a_deletion(): void {
		$subscriber = wp_insert_user( array( 'user_login' => 'sub', 'user_email' => 'sub@example.com', 'user_pass' => 'x', 'role' => 'subscriber' ) );
		$order      = wc_create_order();
		WooBrevo_Settings::set( 'payload_user', $subscriber );
		list( $status, $data ) = ( new WooBrevo_Payloads() )->rest_get( '/wc/v3/orders/' . $order->get_id() );
		$this->assertSame( 403, $status );
		$this->assertSame( 'woocommerce_rest_cannot_view', $data['code'] );
		$this->expectException( RuntimeException::class );
		( new WooBrevo_Payloads() )->build( $this->row( 'order', $order->get_id() ), array() );
	}

	/**
	 * What build() gives each row: its body, null, or the exception it throws.
	 *
	 * @return array<int|string, array|Throwable|null>
	 */
	private function one_by_one( array $rows, array $watch_meta ): array {
		$payloads = new WooBrevo_Payloads();
		$out      = array();
		foreach ( $rows as $key => $row ) {
			try {
				$out[ $key ] = $payloads->build( $row, $watch_meta );
			} catch ( Throwable $e ) {
				$out[ $key ] = $e;
			}
		}
		return $out;
	}

	/** Counts the REST requests dispatched while $fn runs. */
	private function count_requests( callable $fn, array &$routes = array() ): int {
		$count = static function ( $result, $server, $request ) use ( &$routes ) {
			$routes[] = $request->get_route();
			return $result;
		};
		add_filter( 'rest_pre_dispatch', $count, 10, 3 );
		try {
			$fn();
		} finally {
			remove_filter( 'rest_pre_dispatch', $count, 10 );
		}
		return count( $routes );
	}

	public function test_build_many_gives_each_row_what_build_gives_it(): void {
		$customer = $this->make_customer();
		update_user_meta( $customer->get_id(), 'loyalty_points', '7' );
		$product = $this->make_product( 'Mug', '9.50' );
		$order   = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->add_product( $product, 3 );
		$order->calculate_totals();
		$order->update_meta_data( '_brevo_test', 'o1' );
		$order->save();
		$order->update_status( 'completed' );
		$guest = wc_create_order();
		$guest->set_billing_email( 'guest@example.com' );
		$guest->save();
		$trashed = wc_create_order();
		$trashed->save();
		$trashed_id = $trashed->get_id();
		$trashed->delete( false );
		$parent = new WC_Product_Variable();
		$parent->set_name( 'Hoodie' );
		$parent->save();
		$variation = new WC_Product_Variation();
		$variation->set_parent_id( $parent->get_id() );
		$variation->set_attributes( array( 'size' => 'M' ) );
		$variation->set_regular_price( '40' );
		$variation->save();
		$coupon = new WC_Coupon();
		$coupon->set_code( 'SPRING' );
		$coupon->set_amount( '5' );
		$coupon->save();
		$rows  = array(
			$this->row( 'order', $order->get_id() ),
			$this->row( 'customer', $customer->get_id() ),
			$this->row( 'customer', $this->admin_id() ), // Not of the `customer` role.
			$this->row( 'order', $guest->get_id() ),
			$this->row( 'order', $trashed_id ), // Left out of the collection.
			$this->row( 'order', 999999 ), // Vanished.
			$this->row( 'order', 999998, 'deleted' ),
			$this->row( 'product', $product->get_id() ),
			$this->row( 'product', $parent->get_id() ),
			$this->row( 'variation', $variation->get_id() ),
			$this->row( 'variation', 999997, 'updated', array( 'parent_id' => $parent->get_id() ) ), // Vanished.
			$this->row( 'variation', 999996, 'deleted', array( 'parent_id' => $parent->get_id() ) ),
			$this->row( 'coupon', $coupon->get_id() ),
			$this->row( 'order', $order->get_id() ), // The same object twice.
		);
		$watch = array(
			'order'    => array( '_brevo_test' ),
			'customer' => array( 'loyalty_points' ),
		);

		$single = $this->one_by_one( $rows, $watch );
		$many   = ( new WooBrevo_Payloads() )->build_many( $rows, $watch );
		$this->assertSame( array_keys( $rows ), array_keys( $many ) );
		// As shipped: JSON (meta_data holds WC_Meta_Data objects, equal but not the same instances).
		$this->assertSame( array_map( 'wp_json_encode', $single ), array_map( 'wp_json_encode', $many ) );
		$this->assertSame( 'trash', $many[4]['status'] ); // Asked alone: the collection leaves trash out.
		$this->assertNull( $many[5] );
		$this->assertSame( array( 'id' => 999998 ), $many[6] );
		$this->assertNull( $many[10] );
		// WooCommerce 7.x variation bodies have no parent_id; every version links the parent.
		$this->assertStringEndsWith( '/wc/v3/products/' . $parent->get_id(), $many[9]['_links']['up'][0]['href'] );
		$this->assertSame( 'o1', array_column( $many[0]['meta_data'], 'value', 'key' )['_brevo_test'] );
		$this->assertSame( 1, $many[1]['orders_count'] );
		$this->assertSame( 0, get_current_user_id(), 'the current user is restored' );
	}

	public function test_build_many_asks_one_collection_request_per_resource(): void {
		$orders = array();
		for ( $i = 0; $i < 130; $i++ ) {
			$orders[] = wc_create_order()->get_id();
		}
		$product  = $this->make_product();
		$customer = $this->make_customer();
		$rows     = array_map( fn( $id ) => $this->row( 'order', $id ), $orders );
		$rows[]   = $this->row( 'product', $product->get_id() );
		$rows[]   = $this->row( 'customer', $customer->get_id() );
		$rows[]   = $this->row( 'order', 999999 ); // Not listed: asked alone (and 404).
		$routes   = array();
		$requests = $this->count_requests(
			function () use ( $rows, &$many ) {
				$many = ( new WooBrevo_Payloads() )->build_many( $rows, array() );
			},
			$routes
		);
		$this->assertSame( array( '/wc/v3/orders', '/wc/v3/orders', '/wc/v3/orders/999999', '/wc/v3/products', '/wc/v3/customers' ), $routes, '130 + 1 orders: two pages of at most 100, then the missing one alone' );
		$this->assertSame( 5, $requests );
		$this->assertCount( 133, $many );
		$this->assertSame( $orders[129], $many[129]['id'] );
		$this->assertNull( $many[132] );
	}

	public function test_build_many_without_read_access_fails_each_row_as_build_does(): void {
		$subscriber = wp_insert_user( array( 'user_login' => 'sub2', 'user_email' => 'sub2@example.com', 'user_pass' => 'x', 'role' => 'subscriber' ) );
		$order      = wc_create_order();
		WooBrevo_Settings::set( 'payload_user', $subscriber );
		$rows = array( $this->row( 'order', $order->get_id() ), $this->row( 'order', 5, 'deleted' ) );
		$many = ( new WooBrevo_Payloads() )->build_many( $rows, array() );
		$this->assertInstanceOf( RuntimeException::class, $many[0] );
		$this->assertStringContainsString( 'HTTP 403', $many[0]->getMessage() );
		$this->assertSame( array( 'id' => 5 ), $many[1] );
	}

	public function test_collection_route_filters_by_include_like_woocommerce(): void {
		wp_set_current_user( $this->admin_id() );
		$a       = wc_create_order()->get_id();
		$b       = wc_create_order()->get_id();
		$c       = wc_create_order()->get_id();
		$request = new WP_REST_Request( 'GET', '/wc/v3/orders' );
		$request->set_query_params(
			array(
				'include'  => array( $c, $a, $b ),
				'orderby'  => 'include',
				'per_page' => 2,
			)
		);
		$response = rest_do_request( $request );
		$this->assertSame( 200, $response->get_status() );
		$this->assertSame( array( $c, $a ), array_column( $response->get_data(), 'id' ), 'in the order of include, one page' );
		$this->assertSame( '3', (string) $response->get_headers()['X-WP-Total'] );
		$this->assertSame( '2', (string) $response->get_headers()['X-WP-TotalPages'] );

		$request->set_query_params( array( 'include' => array( $a ), 'per_page' => 101 ) );
		$this->assertSame( 400, rest_do_request( $request )->get_status(), 'per_page is at most 100' );

		$customers = new WP_REST_Request( 'GET', '/wc/v3/customers' );
		$customers->set_query_params( array( 'include' => array( $this->admin_id() ) ) );
		$this->assertSame( array(), rest_do_request( $customers )->get_data(), 'the customer role by default' );
		$customers->set_query_params( array( 'include' => array( $this->admin_id() ), 'role' => 'all' ) );
		$this->assertSame( array( $this->admin_id() ), array_column( rest_do_request( $customers )->get_data(), 'id' ) );
	}

	public function test_rest_restores_the_current_user(): void {
		wp_set_current_user( 0 );
		( new WooBrevo_Payloads() )->rest_get( '/wc/v3/orders/1' );
		$this->assertSame( 0, get_current_user_id() );
	}
}
