<?php
/**
 * The test double's card gateway `wcd_card`: pays an order as a careless real card gateway does,
 * leaving payment details on it (the title, a transaction id, the gateway's own meta keys and
 * the card number itself, the shopper's IP and browser), so the tests can show that none of it
 * leaves the store (minimization, docs/privacy.md). Loaded by the double; tests against a real
 * WooCommerce require this file themselves (it uses only WC_Order's public API).
 *
 * @package WooBrevo\Tests
 */

defined( 'ABSPATH' ) || exit;

/**
 * A card gateway with process_payment() as WooCommerce calls it at checkout.
 */
final class WCD_Gateway_Card {

	public const ID = 'wcd_card';

	public const TITLE = 'Credit card (WCD)';

	/** A Luhn-valid test card number, stored on the order as the careless gateway does. */
	public const CARD_NUMBER = '4242 4242 4242 4242';

	/** @var string WC_Payment_Gateway::$id. */
	public $id = self::ID;

	/** @var string WC_Payment_Gateway::$title. */
	public $title = self::TITLE;

	/**
	 * Pays the order: payment method and title, the shopper's IP and browser, the gateway's meta,
	 * then payment_complete() with a transaction id (order paid: processing).
	 *
	 * @param int $order_id Order id.
	 * @return array{result: string, redirect: string, transaction_id: string}
	 */
	public function process_payment( $order_id ): array {
		$order       = wc_get_order( (int) $order_id );
		$transaction = 'ch_wcd_' . wp_generate_password( 16, false );
		$order->set_payment_method( self::ID );
		$order->set_payment_method_title( self::TITLE );
		$order->set_customer_ip_address( '203.0.113.42' );
		$order->set_customer_user_agent( 'Mozilla/5.0 (X11; Linux x86_64) WCD-Card-Test' );
		$order->set_transaction_id( $transaction );
		if ( function_exists( 'wcd_hpos_enabled' ) ) {
			// The double keeps meta as given; real WooCommerce owns `_transaction_id` (set above).
			$order->update_meta_data( '_transaction_id', $transaction );
		}
		$order->update_meta_data( '_stripe_source_id', 'src_wcd_' . wp_generate_password( 12, false ) );
		$order->update_meta_data( '_stripe_customer_id', 'cus_wcd_' . wp_generate_password( 12, false ) );
		$order->update_meta_data( '_wcd_card_number', self::CARD_NUMBER );
		$order->update_meta_data( 'wcd_payment_note', 'paid with card ' . self::CARD_NUMBER . ' today' );
		$order->save();
		$order->payment_complete( $transaction );
		return array(
			'result'         => 'success',
			'redirect'       => home_url( '/checkout/order-received/' . $order->get_id() . '/' ),
			'transaction_id' => $transaction,
		);
	}
}
