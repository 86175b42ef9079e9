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

	private function reference( string $file ): array {
		return json_decode( (string) file_get_contents( WOOBREVO_TESTS_DIR . '/wc-double/templates/' . $file . '.json' ), true );
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
		update_user_meta( $customer->get_id(), '_brevo_secret', 'hidden' );
		$product = $this->make_product( 'Tee', '10.00' );
		$order   = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->add_product( $product, 2 );
		$order->calculate_totals();
		$order->save();
		$order->update_status( 'completed' );

		$body = ( new WooBrevo_Payloads() )->build( $this->row( 'customer', $customer->get_id() ), array( 'customer' => array( 'loyalty_points', '_brevo_secret' ) ) );
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
		$this->assertSame( 'hidden', $meta['_brevo_secret'] );
		$this->assertStringEndsWith( '/wc/v3/customers/' . $customer->get_id(), $body['_links']['self'][0]['href'] );
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
		$this->assertSame( array_keys( $this->reference( 'order' ) ), array_keys( $body ) );
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
		$this->assertSame( array_keys( $this->reference( 'product' ) ), array_keys( $product ) );
		$this->assertSame( 'variable', $product['type'] );
		$this->assertSame( array( $variation->get_id() ), $product['variations'] );

		$body = $payloads->build( $this->row( 'variation', $variation->get_id() ), array() );
		$this->assertSame( array_keys( $this->reference( 'variation' ) ), array_keys( $body ) );
		$this->assertSame( $parent->get_id(), $body['parent_id'] );
		$this->assertSame( '30', $body['regular_price'] );

		$body = $payloads->build( $this->row( 'coupon', $coupon->get_id() ), array() );
		$this->assertSame( array_keys( $this->reference( 'coupon' ) ), array_keys( $body ) );
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

	public function test_rest_restores_the_current_user(): void {
		wp_set_current_user( 0 );
		( new WooBrevo_Payloads() )->rest_get( '/wc/v3/orders/1' );
		$this->assertSame( 0, get_current_user_id() );
	}
}
