<?php
/**
 * The test double's card gateway `wcd_card`: pays an order as a careless real card gateway does,
 * leaving payment details on it (the title, a transaction id, the gateway's own meta keys and
 * the card number itself, the shopper's IP and browser), so the tests can show that none of it
 * leaves the store (minimization, docs/privacy.md). Loaded by the double; tests against a real
 * WooCommerce require this file themselves (it uses only WC_Order's public API). It registers
 * itself through WooCommerce's `woocommerce_payment_gateways` filter, and the double's gateway
 * registry (WC()->payment_gateways(), below) lists what that filter gives, as real WooCommerce's
 * does: read once, when the registry is made (the first call in a request), keeping only
 * WC_Payment_Gateway objects.
 *
 * @package WooBrevo\Tests
 */

defined( 'ABSPATH' ) || exit;

if ( ! class_exists( 'WC_Payment_Gateway' ) ) {
	/**
	 * WooCommerce's base class of payment gateways, as far as the double needs it: its registry
	 * keeps only objects of this class.
	 */
	abstract class WC_Payment_Gateway {

		/** @var string The gateway's id (the order's payment_method). */
		public $id;

		/** @var string The title shoppers see. */
		public $title;
	}
}

/**
 * A card gateway with process_payment() as WooCommerce calls it at checkout.
 */
final class WCD_Gateway_Card extends WC_Payment_Gateway {

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

if ( ! class_exists( 'WC_Payment_Gateways' ) ) {
	/**
	 * WooCommerce's gateway registry as far as WooBrevo asks, made as real WooCommerce makes it:
	 * once (WC()->payment_gateways() is a singleton), from the `woocommerce_payment_gateways`
	 * filter as it is then (class names are instantiated), keeping only WC_Payment_Gateway
	 * objects. A gateway added to the filter later is not in it until the next request.
	 */
	final class WC_Payment_Gateways {

		/** @var WC_Payment_Gateway[] The registered gateways, in order. */
		public $payment_gateways = array();

		/** @var WC_Payment_Gateways|null The request's registry. */
		protected static $_instance = null; // phpcs:ignore PSR2.Classes.PropertyDeclaration.Underscore -- WooCommerce's own name.

		public static function instance(): WC_Payment_Gateways {
			if ( null === self::$_instance ) {
				self::$_instance = new self();
			}
			return self::$_instance;
		}

		public function __construct() {
			$this->init();
		}

		/** Loads the gateways the filter gives. */
		public function init(): void {
			foreach ( (array) apply_filters( 'woocommerce_payment_gateways', array() ) as $gateway ) {
				if ( is_string( $gateway ) && class_exists( $gateway ) ) {
					$gateway = new $gateway();
				}
				if ( $gateway instanceof WC_Payment_Gateway ) {
					$this->payment_gateways[] = $gateway;
				}
			}
		}

		/**
		 * The registered gateways, by id.
		 *
		 * @return array<string, WC_Payment_Gateway>
		 */
		public function payment_gateways(): array {
			$out = array();
			foreach ( $this->payment_gateways as $gateway ) {
				$out[ $gateway->id ] = $gateway;
			}
			return $out;
		}
	}
}

add_filter(
	'woocommerce_payment_gateways',
	static function ( $gateways ) {
		$gateways   = (array) $gateways;
		$gateways[] = WCD_Gateway_Card::class;
		return $gateways;
	}
);
