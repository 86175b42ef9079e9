<?php
/**
 * Finding 5 of issue 16: payment data reached Brevo through meta. The plugin now drops payment
 * meta by a rule (WooBrevo_Payloads::is_payment_meta, the same as the agent's), so it never
 * leaves WordPress: an order paid with the double's card gateway that carries the real meta keys
 * of the major gateways (tests/fixtures/woocommerce/gateway-meta-keys.json), and a customer with
 * their user meta, ship none of them, even when the agent asks for those keys by name; the keys of
 * any gateway registered in WooCommerce, or of the order's own gateway, are dropped too; normal
 * meta still ships. Card numbers are replaced in every object but the catalogue's own codes.
 *
 * @package WooBrevo\Tests
 */

declare(strict_types=1);

require_once dirname( __DIR__ ) . '/wc-double/wc-double-card.php'; // Loaded by the double; a real WooCommerce needs it here.

/**
 * @covers WooBrevo_Payloads
 */
final class PaymentMetaTest extends WooBrevo_TestCase {

	/** In every gateway value of the fixture. */
	private const MARKER = 'gwsecret';

	/** The EAN-13 example, which happens to pass the Luhn check. */
	private const EAN = '5901234123457';

	/** Keys real WooCommerce keeps as order properties (update_meta_data() on them is "doing it wrong"): set on the double only. */
	private const CORE_KEYS = array( '_transaction_id', '_payment_tokens', '_payment_method', '_payment_method_title', '_order_key' );

	protected function setUp(): void {
		parent::setUp();
		WooBrevo_Settings::set( 'payload_user', $this->admin_id() );
	}

	private static function fixture(): array {
		$path = dirname( WOOBREVO_TESTS_DIR ) . '/fixtures/woocommerce/gateway-meta-keys.json';
		return json_decode( (string) file_get_contents( $path ), true );
	}

	private function row( string $resource, int $id ): array {
		return array(
			'resource'    => $resource,
			'resource_id' => $id,
			'topic'       => $resource . '.updated',
			'extra'       => array(),
		);
	}

	/** The body of a row both ways the shipper builds one: alone, and through a collection request. */
	private function bodies( array $row, array $watch ): array {
		$payloads = new WooBrevo_Payloads();
		return array(
			'build'      => $payloads->build( $row, $watch ),
			'build_many' => $payloads->build_many( array( $row ), $watch )[0],
		);
	}

	/** A body's meta_data as key => value. */
	private function meta_of( array $body ): array {
		$entries = array_map( static fn( $m ) => $m instanceof JsonSerializable ? $m->jsonSerialize() : $m, (array) ( $body['meta_data'] ?? array() ) );
		return array_column( $entries, 'value', 'key' );
	}

	/** Neither a gateway value (by its marker) nor a gateway key is anywhere in the body. */
	private function assert_no_payment_meta( array $body, array $keys, string $how ): void {
		$json = (string) wp_json_encode( $body );
		$this->assertStringNotContainsString( self::MARKER, $json, $how );
		foreach ( $keys as $key ) {
			$this->assertStringNotContainsString( (string) wp_json_encode( (string) $key ), $json, $how . ': ' . $key );
		}
	}

	public function test_a_card_paid_order_with_every_gateways_meta_ships_none_of_it(): void {
		$fixture  = self::fixture();
		$customer = $this->make_customer( 'gateway.payer@example.com' );
		$order    = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->add_product( $this->make_product( 'Gateway mug', '12.00' ), 1 );
		$order->set_billing_email( 'gateway.payer@example.com' );
		$order->set_customer_note( 'my card is ' . WCD_Gateway_Card::CARD_NUMBER );
		$order->calculate_totals();
		$order->save();
		$this->assertSame( 'success', ( new WCD_Gateway_Card() )->process_payment( $order->get_id() )['result'] );
		$order = wc_get_order( $order->get_id() );
		$keys  = array( '_wcd_card_number', 'wcd_payment_note', '_stripe_source_id' ); // The card gateway's own.
		foreach ( $fixture['gateways'] as $gateway ) {
			foreach ( $gateway['order'] as $key => $value ) {
				if ( in_array( $key, self::CORE_KEYS, true ) && ! function_exists( 'wcd_hpos_enabled' ) ) {
					continue;
				}
				$order->update_meta_data( (string) $key, $value );
				$keys[] = (string) $key;
			}
		}
		foreach ( $fixture['kept']['order'] as $key => $value ) {
			$order->update_meta_data( (string) $key, $value );
		}
		$order->save();
		$this->assertGreaterThan( 60, count( $keys ) );
		// The agent refuses a mapping that names them; the plugin drops them even when asked for.
		$watch = array( 'order' => array_merge( $keys, array_keys( $fixture['kept']['order'] ) ) );
		foreach ( $this->bodies( $this->row( 'order', $order->get_id() ), $watch ) as $how => $body ) {
			$this->assert_no_payment_meta( $body, $keys, $how );
			foreach ( WooBrevo_Payloads::PAYMENT_FIELDS as $field ) {
				$this->assertArrayNotHasKey( $field, $body, $how );
			}
			$this->assertSame( WCD_Gateway_Card::ID, $body['payment_method'], 'which gateway is not a payment detail' );
			$this->assertSame( 'my card is ' . WooBrevo_Payloads::REMOVED, $body['customer_note'], $how );
			$meta = $this->meta_of( $body );
			foreach ( $fixture['kept']['order'] as $key => $value ) {
				$this->assertSame( $value, $meta[ $key ] ?? null, $how . ': ' . $key . ' still ships' );
			}
		}
	}

	public function test_a_customers_gateway_user_meta_ships_none_of_it(): void {
		$fixture  = self::fixture();
		$customer = $this->make_customer( 'gateway.customer@example.com' );
		$keys     = array();
		foreach ( $fixture['gateways'] as $gateway ) {
			foreach ( $gateway['user'] as $key => $value ) {
				update_user_meta( $customer->get_id(), (string) $key, $value );
				$keys[] = (string) $key;
			}
		}
		foreach ( $fixture['kept']['user'] as $key => $value ) {
			update_user_meta( $customer->get_id(), (string) $key, $value );
		}
		$this->assertContains( '_wcpay_customer_id', $keys );
		$this->assertContains( 'session_tokens', $keys );
		$watch = array( 'customer' => array_merge( $keys, array_keys( $fixture['kept']['user'] ) ) );
		foreach ( $this->bodies( $this->row( 'customer', $customer->get_id() ), $watch ) as $how => $body ) {
			$this->assert_no_payment_meta( $body, $keys, $how );
			$this->assertStringNotContainsString( '203.0.113.7', (string) wp_json_encode( $body ), $how . ': a login session' );
			$meta = $this->meta_of( $body );
			foreach ( $fixture['kept']['user'] as $key => $value ) {
				$this->assertSame( $value, $meta[ $key ] ?? null, $how . ': ' . $key . ' still ships' );
			}
		}
	}

	/**
	 * Starts the next request's gateway registry: WooCommerce makes WC()->payment_gateways() once a
	 * request, from the `woocommerce_payment_gateways` filter as it is then (a gateway plugin adds
	 * itself on plugins_loaded), so a gateway a test adds is registered from the next request on.
	 */
	private static function next_request_gateways(): void {
		$instance = new ReflectionProperty( WC_Payment_Gateways::class, '_instance' );
		$instance->setAccessible( true );
		$instance->setValue( null, null );
	}

	public function test_a_registered_gateways_keys_and_the_orders_own_gateways_never_ship(): void {
		$northwind = new class() extends WC_Payment_Gateway {
			/** @var string WC_Payment_Gateway::$id of a gateway no rule has heard of. */
			public $id = 'northwind';
		};
		$register = static function ( $gateways ) use ( $northwind ) {
			$gateways   = (array) $gateways;
			$gateways[] = $northwind;
			return $gateways;
		};
		add_filter( 'woocommerce_payment_gateways', $register );
		self::next_request_gateways();
		try {
			$this->assertContains( 'northwind', WooBrevo_Payloads::registered_gateway_ids() );
			$this->assertContains( WCD_Gateway_Card::ID, WooBrevo_Payloads::registered_gateway_ids() );
			// A customer: registered gateways' keys go (a customer has no payment_method).
			$customer = $this->make_customer( 'northwind.customer@example.com' );
			update_user_meta( $customer->get_id(), '_northwind_profile', 'nw-gwsecret-1' );
			update_user_meta( $customer->get_id(), 'northwind_vault_ref', 'nw-gwsecret-2' );
			update_user_meta( $customer->get_id(), 'wcd_shopper_ref', 'wcd-gwsecret-3' ); // The card gateway's stem.
			update_user_meta( $customer->get_id(), 'loyalty_tier', 'silver' );
			$watch = array( 'customer' => array( '_northwind_profile', 'northwind_vault_ref', 'wcd_shopper_ref', 'loyalty_tier' ) );
			foreach ( $this->bodies( $this->row( 'customer', $customer->get_id() ), $watch ) as $how => $body ) {
				$this->assert_no_payment_meta( $body, array( '_northwind_profile', 'northwind_vault_ref', 'wcd_shopper_ref' ), $how );
				$this->assertSame( 'silver', $this->meta_of( $body )['loyalty_tier'] ?? null, $how );
			}
			// An order paid through a gateway registered nowhere: its own payment_method still counts.
			$order = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
			$order->add_product( $this->make_product( 'Southwind mug', '9.00' ), 1 );
			$order->set_billing_email( 'northwind.customer@example.com' );
			$order->set_payment_method( 'southwind-gateway' );
			$order->update_meta_data( '_southwind_ref', 'sw-gwsecret-4' );
			$order->update_meta_data( '_northwind_ref', 'nw-gwsecret-5' );
			$order->update_meta_data( 'loyalty_tier', 'silver' );
			$order->calculate_totals();
			$order->save();
			$watch = array( 'order' => array( '_southwind_ref', '_northwind_ref', 'loyalty_tier' ) );
			foreach ( $this->bodies( $this->row( 'order', $order->get_id() ), $watch ) as $how => $body ) {
				$this->assert_no_payment_meta( $body, array( '_southwind_ref', '_northwind_ref' ), $how );
				$this->assertSame( 'silver', $this->meta_of( $body )['loyalty_tier'] ?? null, $how );
			}
		} finally {
			remove_filter( 'woocommerce_payment_gateways', $register );
			self::next_request_gateways();
		}
		$this->assertNotContains( 'northwind', WooBrevo_Payloads::registered_gateway_ids() );
	}

	public function test_the_rule_reads_words_not_substrings(): void {
		foreach ( array( '_wcpay_customer_id', 'stripeCustomerId', 'Payer PayPal address', 'session_tokens', 'amazon_charge_id', '_wc_square_credit_card_trans_id', 'bank_account_number', '_order_key' ) as $key ) {
			$this->assertTrue( WooBrevo_Payloads::is_payment_meta( $key ), $key );
		}
		foreach ( array( 'loyalty_tier', '_billing_vat', 'billing_company', 'discount', 'paying_customer', 'payload', '_woobrevo_consent', 'display_name', '_cart_hash', '_date_paid', '_gtin' ) as $key ) {
			$this->assertFalse( WooBrevo_Payloads::is_payment_meta( $key ), $key );
		}
		$this->assertTrue( WooBrevo_Payloads::is_payment_meta( 'wc_NorthWind_mode', array( 'NorthWind' ) ) );
		$this->assertFalse( WooBrevo_Payloads::is_payment_meta( '_northwindy', array( 'northwind' ) ) );
		$this->assertSame( array( 'ppcp_gateway', 'ppcp' ), WooBrevo_Payloads::gateway_prefixes( 'ppcp-gateway' ) );
		$this->assertSame( array( 'wcd_card', 'wcd' ), WooBrevo_Payloads::gateway_prefixes( 'wcd_card' ) );
		$this->assertSame( array( 'wcpay' ), WooBrevo_Payloads::payment_words( '_wcpay_customer_id' ) );
	}

	public function test_card_numbers_are_replaced_in_products_too_but_not_the_catalogues_codes(): void {
		$product = $this->make_product( 'Barcode pen', '3.00' );
		$product->set_sku( self::EAN );
		$product->set_description( 'Pay with ' . WCD_Gateway_Card::CARD_NUMBER . ' at the till' );
		$product->update_meta_data( '_gtin', self::EAN );
		$product->update_meta_data( 'supplier_note', 'ref ' . self::EAN );
		$product->save();
		$body = ( new WooBrevo_Payloads() )->build( $this->row( 'product', $product->get_id() ), array( 'product' => array( '_gtin', 'supplier_note' ) ) );
		$this->assertSame( self::EAN, $body['sku'] );
		// Real WooCommerce's REST description is the HTML shown (wpautop: '<p>…</p>'); the double's is the text.
		$this->assertSame( 'Pay with ' . WooBrevo_Payloads::REMOVED . ' at the till', trim( wp_strip_all_tags( $body['description'] ) ) );
		$meta = $this->meta_of( $body );
		$this->assertSame( self::EAN, $meta['_gtin'], 'a barcode meta value is a code' );
		$this->assertSame( 'ref ' . WooBrevo_Payloads::REMOVED, $meta['supplier_note'], 'any other value is checked' );
		$this->assertSame(
			array(
				'sku'              => self::EAN,
				'global_unique_id' => self::EAN,
				'note'             => WooBrevo_Payloads::REMOVED,
			),
			WooBrevo_Payloads::without_card_numbers(
				array(
					'sku'              => self::EAN,
					'global_unique_id' => self::EAN,
					'note'             => self::EAN,
				)
			)
		);
	}

	public function test_digits_inside_a_token_are_no_card_number(): void {
		// tests/chaos: a cart's random hex token with a Luhn-valid run of 16 digits lost its middle.
		$token = 'a9f0' . str_replace( ' ', '', WCD_Gateway_Card::CARD_NUMBER ) . 'bc';
		$this->assertSame( $token, WooBrevo_Payloads::without_card_numbers( $token ) );
		$this->assertSame( 'card ' . WooBrevo_Payloads::REMOVED . '.', WooBrevo_Payloads::without_card_numbers( 'card ' . WCD_Gateway_Card::CARD_NUMBER . '.' ) );
	}
}
