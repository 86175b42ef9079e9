<?php
/**
 * Store actions for the end-to-end tests, one WordPress request per process (as a shop has):
 *
 *   WOOBREVO_WP_DIR=… [WOOBREVO_WP_PATH=/shop2/] php wp_scenario.php COMMAND [ARGS…]
 *
 * configure URL TOKEN [CAFILE]     agent URL and site token of this site (the settings screen's options)
 * customer EMAIL FIRST LAST        a registered customer (WooCommerce's own creation path, then a profile update)
 * product NAME                     a variable product with two variations (Color: Red, Blue)
 * coupon CODE                      a percent coupon
 * order CUSTOMER_ID PRODUCT_ID VARIATION_ID COUPON   an order, created as pending
 * status ORDER_ID STATUS           one status transition (its own request, so it is its own event)
 * refund ORDER_ID AMOUNT           a partial refund
 * flush                            ship now: ends any backoff, then ticks until the outbox is empty
 * state                            outbox depth, epoch, blog id, last error, backoff
 *
 * Prints one JSON object. Each process ends with WordPress's `shutdown`, where the plugin's own
 * shipper runs as it does after a real request (CLI: no response to wait for).
 *
 * @package WooBrevo
 */

require dirname( __DIR__ ) . '/php/wp-env/load.php';

$woobrevo_args = array_slice( $argv, 1 );
$woobrevo_cmd  = (string) array_shift( $woobrevo_args );
wp_set_current_user( 1 );

/**
 * Prints the result.
 *
 * @param array $data Result.
 */
function woobrevo_e2e_out( array $data ): void {
	echo wp_json_encode( $data ), "\n";
}

switch ( $woobrevo_cmd ) {
	case 'configure':
		WooBrevo_Settings::set( 'agent_url', $woobrevo_args[0] );
		WooBrevo_Settings::set( 'token', $woobrevo_args[1] );
		WooBrevo_Settings::set( 'ca_file', $woobrevo_args[2] ?? '' );
		WooBrevo_Settings::set( 'payload_user', 1 );
		delete_option( WooBrevo_Shipper::BACKOFF_STEP_OPTION );
		delete_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION );
		woobrevo_e2e_out( array( 'blog_id' => get_current_blog_id() ) );
		break;

	case 'customer':
		list( $email, $first, $last ) = $woobrevo_args;
		$id                           = wc_create_new_customer( $email, sanitize_user( strstr( $email, '@', true ) ), 'pw-' . wp_generate_password( 12, false ) );
		if ( is_wp_error( $id ) ) {
			fwrite( STDERR, $id->get_error_message() . "\n" );
			exit( 1 );
		}
		$customer = new WC_Customer( $id );
		$customer->set_first_name( $first );
		$customer->set_last_name( $last );
		$customer->set_billing_first_name( $first );
		$customer->set_billing_last_name( $last );
		$customer->set_billing_email( $email );
		$customer->set_billing_city( 'Lyon' );
		$customer->set_billing_country( 'FR' );
		$customer->set_billing_phone( '+33 6 12 34 56 78' );
		$customer->save();
		woobrevo_e2e_out( array( 'customer_id' => (int) $id ) );
		break;

	case 'product':
		$product = new WC_Product_Variable();
		$product->set_name( $woobrevo_args[0] );
		$product->set_sku( 'E2E-' . strtoupper( wp_generate_password( 6, false ) ) );
		$product->set_regular_price( '20.00' );
		$parent     = $product->save();
		$variations = array();
		foreach ( array( 'Red' => '20.00', 'Blue' => '22.00' ) as $color => $price ) {
			$variation = new WC_Product_Variation();
			$variation->set_parent_id( $parent );
			$variation->set_name( $woobrevo_args[0] . ' - ' . $color );
			$variation->set_regular_price( $price );
			$variation->set_sku( 'E2E-' . strtoupper( wp_generate_password( 6, false ) ) );
			$variations[] = $variation->save();
		}
		woobrevo_e2e_out(
			array(
				'product_id'    => (int) $parent,
				'variation_ids' => array_map( 'intval', $variations ),
			)
		);
		break;

	case 'coupon':
		$coupon = new WC_Coupon();
		$coupon->set_code( $woobrevo_args[0] );
		$coupon->set_discount_type( 'percent' );
		$coupon->set_amount( '10' );
		woobrevo_e2e_out( array( 'coupon_id' => (int) $coupon->save() ) );
		break;

	case 'order':
		list( $customer_id, $product_id, $variation_id, $code ) = $woobrevo_args;
		$customer = new WC_Customer( (int) $customer_id );
		$order    = wc_create_order( array( 'customer_id' => (int) $customer_id ) );
		$order->add_product( wc_get_product( (int) $variation_id ), 2 );
		$order->set_billing_first_name( $customer->get_first_name() );
		$order->set_billing_last_name( $customer->get_last_name() );
		$order->set_billing_email( $customer->get_email() );
		$order->set_billing_city( 'Lyon' );
		$order->set_billing_country( 'FR' );
		if ( method_exists( $order, 'apply_coupon' ) && '' !== $code ) {
			$order->apply_coupon( $code );
		}
		$order->calculate_totals();
		$order->set_status( 'pending' );
		$order->save();
		woobrevo_e2e_out(
			array(
				'order_id' => (int) $order->get_id(),
				'total'    => (string) $order->get_total(),
			)
		);
		break;

	case 'status':
		$order = wc_get_order( (int) $woobrevo_args[0] );
		$order->update_status( $woobrevo_args[1] );
		woobrevo_e2e_out( array( 'status' => $order->get_status() ) );
		break;

	case 'refund':
		$refund = wc_create_refund(
			array(
				'order_id' => (int) $woobrevo_args[0],
				'amount'   => $woobrevo_args[1],
				'reason'   => 'e2e',
			)
		);
		if ( is_wp_error( $refund ) ) {
			fwrite( STDERR, $refund->get_error_message() . "\n" );
			exit( 1 );
		}
		woobrevo_e2e_out( array( 'refund_id' => (int) $refund->get_id() ) );
		break;

	case 'flush':
		// An operator's "ship now": the backoff is for unattended ticks.
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 0 );
		$outbox  = new WooBrevo_Outbox();
		$shipper = new WooBrevo_Shipper( $outbox, new WooBrevo_Payloads() );
		$totals  = array(
			'sent'     => 0,
			'acked'    => 0,
			'rejected' => 0,
			'error'    => null,
		);
		for ( $i = 0; $i < 50 && $outbox->depth() > 0; $i++ ) {
			$stats               = $shipper->tick();
			$totals['sent']     += $stats['sent'];
			$totals['acked']    += $stats['acked'];
			$totals['rejected'] += $stats['rejected'];
			$totals['error']     = $stats['error'] ?? $stats['skipped'];
			if ( null !== $stats['error'] ) {
				break;
			}
			if ( null !== $stats['skipped'] ) {
				usleep( 200000 );
			}
		}
		$totals['depth']    = $outbox->depth();
		$totals['rejected_list'] = $outbox->rejected( 10 );
		woobrevo_e2e_out( $totals );
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	case 'state':
		$outbox = new WooBrevo_Outbox();
		woobrevo_e2e_out(
			array(
				'blog_id'    => get_current_blog_id(),
				'depth'      => $outbox->depth(),
				'epoch'      => $outbox->epoch(),
				'last_error' => (string) WooBrevo_Settings::get( 'last_error' ),
				'backoff'    => ( new WooBrevo_Shipper( $outbox, new WooBrevo_Payloads() ) )->backoff(),
				'watch_meta' => WooBrevo_Settings::get( 'watch_meta' ),
			)
		);
		add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
		break;

	default:
		fwrite( STDERR, "unknown command $woobrevo_cmd\n" );
		exit( 2 );
}
