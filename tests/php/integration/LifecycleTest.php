<?php
/**
 * Capture of products, variations, coupons, trash/restore/delete (CRUD and wp-admin paths),
 * watch_meta, and the per-request collapse.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Capture
 */
final class LifecycleTest extends WooBrevo_TestCase {

	public function test_variable_product_and_variations(): void {
		$parent = new WC_Product_Variable();
		$parent->set_name( 'Hoodie' );
		$parent->save();
		$variation = new WC_Product_Variation();
		$variation->set_parent_id( $parent->get_id() );
		$variation->set_attributes( array( 'size' => 'S' ) );
		$variation->set_regular_price( '30' );
		$variation->set_manage_stock( true ); // wc_update_product_stock() changes only managed stock.
		$variation->save();
		$variation->set_regular_price( '32' );
		$variation->save();
		$this->assertSame( array( array( 'product.created', $parent->get_id() ) ), $this->topics( 'product' ) );
		$rows = $this->rows( 'variation' );
		$this->assertCount( 1, $rows );
		$this->assertSame( 'variation.created', $rows[0]['topic'] );
		$this->assertSame( array( 'parent_id' => $parent->get_id() ), $rows[0]['extra'] );

		$this->new_request();
		$this->assertSame( 5, (int) wc_update_product_stock( $variation, 5 ) );
		$rows = $this->rows( 'variation' );
		$this->assertCount( 2, $rows );
		$this->assertSame( 'variation.updated', $rows[1]['topic'] );
		$this->assertSame( array( 'parent_id' => $parent->get_id() ), $rows[1]['extra'] );
	}

	public function test_stock_change_is_a_product_update(): void {
		$product = $this->make_product();
		$product->set_manage_stock( true );
		$product->save();
		$this->new_request();
		$this->assertSame( 3, (int) wc_update_product_stock( $product, 3, 'set' ) );
		$this->assertSame( array( array( 'product.created', $product->get_id() ), array( 'product.updated', $product->get_id() ) ), $this->topics() );
	}

	public function test_stock_of_an_unmanaged_product_does_not_change(): void {
		$product = $this->make_product();
		$this->new_request();
		wc_update_product_stock( $product, 3, 'set' );
		$this->assertNull( wc_get_product( $product->get_id() )->get_stock_quantity() );
		$this->assertSame( array( array( 'product.created', $product->get_id() ) ), $this->topics() );
	}

	public function test_coupon_created_updated_trashed_deleted(): void {
		$coupon = new WC_Coupon();
		$coupon->set_code( 'WELCOME10' );
		$coupon->set_amount( '10' );
		$coupon->set_discount_type( 'percent' );
		$coupon->save();
		$id = $coupon->get_id();
		$this->new_request();
		$coupon->set_amount( '15' );
		$coupon->save();
		$this->new_request();
		$coupon->delete();
		$this->assertSame( 0, $coupon->get_id(), 'WC_Data::delete() forgets the id, also when it only trashes' );
		$this->new_request();
		( new WC_Coupon( $id ) )->delete( true );
		$this->assertSame( null, get_post( $id ) );
		$this->assertSame(
			array( array( 'coupon.created', $id ), array( 'coupon.updated', $id ), array( 'coupon.deleted', $id ), array( 'coupon.deleted', $id ) ),
			$this->topics()
		);
	}

	public function test_wp_admin_trash_restore_delete_of_a_product(): void {
		$product = $this->make_product();
		$id      = $product->get_id();
		$this->clear_outbox();
		wp_trash_post( $id );
		$this->new_request();
		wp_untrash_post( $id );
		$this->assertSame( 'publish', get_post_status( $id ) );
		$this->new_request();
		wp_delete_post( $id, true );
		$rows = $this->rows();
		$this->assertSame( array( 'product.deleted', 'product.restored', 'product.deleted' ), array_column( $rows, 'topic' ) );
		$this->assertSame( 'publish', $rows[1]['extra']['previous_status'] );
	}

	public function test_crud_delete_of_a_variation_keeps_the_parent(): void {
		$parent = new WC_Product_Variable();
		$parent->set_name( 'Hoodie' );
		$parent->save();
		$variation = new WC_Product_Variation();
		$variation->set_parent_id( $parent->get_id() );
		$variation->save();
		$id = $variation->get_id();
		$this->clear_outbox();
		$variation->delete( true );
		$rows = $this->rows();
		$this->assertCount( 1, $rows );
		$this->assertSame( array( 'variation.deleted', $id ), array( $rows[0]['topic'], $rows[0]['resource_id'] ) );
		$this->assertSame( $parent->get_id(), $rows[0]['extra']['parent_id'] );
	}

	/** @return array<string, array{0:string}> */
	public function storage_modes(): array {
		return array(
			'hpos'  => array( 'yes' ),
			'posts' => array( 'no' ),
		);
	}

	/** @dataProvider storage_modes */
	public function test_order_trash_restore_delete( string $hpos ): void {
		update_option( 'woocommerce_custom_orders_table_enabled', $hpos );
		$this->assertSame( 'yes' === $hpos, WooBrevo_Capture::hpos_enabled(), 'the storage mode took effect' );
		$order = wc_create_order();
		$order->update_status( 'processing' );
		$id = $order->get_id();
		$this->clear_outbox();
		$order->delete();
		$this->assertSame( 'trash', wc_get_order( $id )->get_status() );
		$this->new_request();
		// WC_Data::delete() leaves the object with id 0, even for a trash: untrash a fresh copy.
		$this->assertTrue( wc_get_order( $id )->untrash() );
		$this->assertSame( 'processing', wc_get_order( $id )->get_status() );
		$this->new_request();
		wc_get_order( $id )->delete( true );
		$this->assertFalse( wc_get_order( $id ) );
		$rows = $this->rows();
		$this->assertSame( array( 'order.deleted', 'order.restored', 'order.deleted' ), array_column( $rows, 'topic' ) );
		$this->assertSame( 'wc-processing', $rows[1]['extra']['previous_status'] );
		$this->assertSame( array( $id, $id, $id ), array_column( $rows, 'resource_id' ) );
	}

	public function test_posts_storage_wp_admin_trash_of_an_order(): void {
		update_option( 'woocommerce_custom_orders_table_enabled', 'no' );
		$this->assertFalse( WooBrevo_Capture::hpos_enabled() );
		$order = wc_create_order();
		$this->clear_outbox();
		wp_trash_post( $order->get_id() );
		$this->assertSame( array( array( 'order.deleted', $order->get_id() ) ), $this->topics() );
	}

	public function test_draft_orders_wait_until_they_leave_draft(): void {
		$order = wc_create_order( array( 'status' => 'checkout-draft' ) );
		$this->assertSame( array(), $this->topics(), 'a checkout draft is not an order yet' );
		$this->new_request();
		$order->update_status( 'processing' );
		$rows = $this->rows();
		$this->assertCount( 1, $rows );
		$this->assertSame( 'order.created', $rows[0]['topic'] );
	}

	public function test_watch_meta_user_meta_is_captured_and_other_keys_are_not(): void {
		$customer = $this->make_customer();
		update_option( 'woobrevo_watch_meta', array( 'customer' => array( 'loyalty_points', '_brevo_secret' ) ) );
		$this->clear_outbox();
		update_user_meta( $customer->get_id(), 'some_noise', 'x' );
		$this->assertSame( array(), $this->topics() );
		update_user_meta( $customer->get_id(), 'loyalty_points', 120 );
		$this->assertSame( array( array( 'customer.updated', $customer->get_id() ) ), $this->topics() );
		$this->new_request();
		delete_user_meta( $customer->get_id(), 'loyalty_points' );
		$this->assertCount( 2, $this->rows() );
	}

	public function test_admin_profile_edit_and_delete_user(): void {
		$customer = $this->make_customer();
		$id       = $customer->get_id();
		$this->clear_outbox();
		do_action( 'edit_user_profile_update', $id );
		wp_update_user( array( 'ID' => $id, 'first_name' => 'Alicia' ) );
		$this->assertSame( array( array( 'customer.updated', $id ) ), $this->topics() );
		$this->new_request();
		require_once ABSPATH . 'wp-admin/includes/user.php';
		wp_delete_user( $id );
		$this->assertSame( array( array( 'customer.updated', $id ), array( 'customer.deleted', $id ) ), $this->topics() );
	}

	public function test_collapse_merges_and_a_claimed_row_is_never_changed(): void {
		$outbox = new WooBrevo_Outbox();
		$outbox->add( 'order', 7, 'updated', array( 'status_from' => 'pending', 'status_to' => 'on-hold' ) );
		$outbox->add( 'order', 7, 'updated', array( 'status_from' => 'on-hold', 'status_to' => 'processing' ) );
		$rows = $this->rows();
		$this->assertCount( 1, $rows );
		$this->assertSame( array( 'status_from' => 'pending', 'status_to' => 'processing' ), $rows[0]['extra'] );
		$claimed = $outbox->claim( 'owner-a', 10, 60 );
		$this->assertCount( 1, $claimed );
		$this->assertSame( $outbox->epoch() . '-' . $rows[0]['id'], $claimed[0]['event_id'] );
		$this->assertMatchesRegularExpression( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/', $claimed[0]['occurred_at'] );
		$outbox->add( 'order', 7, 'deleted' );
		$rows = $this->rows();
		$this->assertCount( 2, $rows, 'the claimed row stays as it was; the change is a new row' );
		$this->assertSame( array( 'order.updated', 'order.deleted' ), array_column( $rows, 'topic' ) );
	}

	public function test_claim_release_delete_rejected_depth(): void {
		$outbox = new WooBrevo_Outbox();
		foreach ( range( 1, 5 ) as $i ) {
			$outbox->add( 'product', $i, 'updated' );
		}
		$a = $outbox->claim( 'a', 3, 60 );
		$b = $outbox->claim( 'b', 3, 60 );
		$this->assertSame( array( 1, 2, 3 ), array_column( $a, 'resource_id' ) );
		$this->assertSame( array( 4, 5 ), array_column( $b, 'resource_id' ) );
		$this->assertSame( array(), $outbox->claim( 'c', 3, 60 ) );
		$outbox->release( 'a' );
		$this->assertSame( array( 1, 2, 3 ), array_column( $outbox->claim( 'c', 3, 60 ), 'resource_id' ) );
		$this->assertSame( 2, $outbox->delete( array_column( $b, 'id' ) ) );
		$this->assertSame( 3, $outbox->depth() );
		$outbox->record_rejected( $a[0], 'invalid_payload', 'payload.id does not match' );
		$this->assertSame( 'invalid_payload', $outbox->rejected()[0]['code'] );
		$this->assertSame( $a[0]['event_id'], $outbox->rejected()[0]['event_id'] );
	}

	public function test_expired_lease_can_be_claimed_again(): void {
		global $wpdb;
		$outbox = new WooBrevo_Outbox();
		$outbox->add( 'coupon', 9, 'created' );
		$outbox->claim( 'dead-shipper', 10, 60 );
		$wpdb->query( "UPDATE {$outbox->table()} SET claimed_until = '2000-01-01 00:00:00'" ); // phpcs:ignore
		$this->assertCount( 1, $outbox->claim( 'next', 10, 60 ) );
	}
}
