<?php
/**
 * Personal data: WordPress's erasure and export tools reach WooBrevo. The eraser (through
 * WordPress's own erasure request) queues exactly one `privacy.erase` and removes the consent
 * records, cart rows and outbox rows that would ship the e-mail again; the exporter lists what
 * the plugin keeps and what the agent keeps (asked over the websocket of a real agent), or says
 * plainly that the agent's part could not be fetched. Minimization: an order paid through the
 * double's card gateway ships no payment field and no card number.
 *
 * @package WooBrevo\Tests
 */

declare(strict_types=1);

require_once dirname( __DIR__ ) . '/unit/WsTestSupport.php';
require_once dirname( __DIR__ ) . '/wc-double/wc-double-card.php'; // Loaded by the double; a real WooCommerce needs it here.

/**
 * @covers WooBrevo_Privacy
 * @covers WooBrevo_Payloads
 */
final class PrivacyTest extends WooBrevo_TestCase {

	private const TOKEN = 'privacy-test-token_0123456789abcdefghijklmnopqrstuvwxyzABCDE';

	private const EMAIL = 'erase.me@example.com';

	/** @var array<string, mixed> */
	private static array $agent;

	private static string $dir;

	public static function setUpBeforeClass(): void {
		self::$dir   = WsTestSupport::temp_dir();
		self::$agent = WsTestSupport::start_agent(
			self::$dir,
			array(),
			array(
				array(
					'id'    => 'default',
					'token' => self::TOKEN,
				),
			)
		);
	}

	public static function tearDownAfterClass(): void {
		WsTestSupport::stop_agent( self::$agent );
		WsTestSupport::remove_dir( self::$dir . '/state' );
		WsTestSupport::remove_dir( self::$dir );
	}

	protected function setUp(): void {
		parent::setUp();
		$this->clear_outbox();
		WooBrevo_Settings::set( 'payload_user', $this->admin_id() );
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$agent['port'] ) );
		WooBrevo_Settings::set( 'token', self::TOKEN );
		update_option( WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 0 );
	}

	/** A customer with a consent record, an order with one, and a cart row of the e-mail. */
	private function person(): array {
		global $wpdb;
		$customer = $this->make_customer( self::EMAIL );
		$record   = array(
			'subscribed' => true,
			'time'       => '2026-12-06T06:29:58Z',
			'source'     => 'checkout_classic',
			'text'       => 'Send me news and offers',
		);
		update_user_meta( $customer->get_id(), WooBrevo_Privacy::CONSENT_META, $record );
		$order = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->add_product( $this->make_product( 'Privacy mug', '12.00' ), 1 );
		$order->set_billing_email( self::EMAIL );
		$order->calculate_totals();
		$order->update_meta_data( WooBrevo_Privacy::CONSENT_META, $record );
		$order->save();
		$wpdb->insert(
			WooBrevo_Schema::carts_table(),
			array(
				'token'        => md5( 'privacy-cart' . wp_rand() ),
				'session_key'  => 'guest-privacy',
				'customer_id'  => 0,
				'email'        => 'Erase.Me@Example.com',
				'hash'         => md5( 'x' ),
				'snapshot'     => wp_json_encode(
					array(
						'id'                => 0,
						'email'             => 'Erase.Me@Example.com',
						'items'             => array(
							array(
								'name'     => 'Privacy mug',
								'quantity' => 2,
							),
						),
						'totals'            => array( 'total' => '24.00' ),
						'currency'          => 'EUR',
						'date_modified_gmt' => '2026-12-06T06:00:00',
					)
				),
				'snapshot_gmt' => gmdate( 'Y-m-d H:i:s' ),
			)
		);
		$cart_id = (int) $wpdb->insert_id;
		$this->new_request();
		( new WooBrevo_Outbox() )->add( 'cart', $cart_id, 'updated' );
		$this->new_request();
		return array( $customer->get_id(), $order->get_id(), $cart_id );
	}

	/** Runs the erasers as wp-admin's "Erase personal data" does, for a confirmed request. */
	private function erase_through_wordpress( string $email ): array {
		$request_id = wp_create_user_request( $email, 'remove_personal_data' );
		if ( ! is_wp_error( $request_id ) ) { // Else the person's request is already open: it runs again.
			wp_update_post(
				array(
					'ID'          => $request_id,
					'post_status' => 'request-confirmed',
				)
			);
		}
		$responses = array();
		foreach ( apply_filters( 'wp_privacy_personal_data_erasers', array() ) as $key => $eraser ) {
			if ( 'woobrevo' !== $key ) {
				continue; // WooCommerce's own erasers are not WooBrevo's to test.
			}
			$page = 1;
			do {
				$response    = call_user_func( $eraser['callback'], $email, $page );
				$responses[] = $response;
				++$page;
			} while ( ! $response['done'] && $page < 10 );
		}
		return $responses;
	}

	public function test_eraser_and_exporter_are_registered_eraser_last(): void {
		$erasers = apply_filters( 'wp_privacy_personal_data_erasers', array() );
		$this->assertArrayHasKey( 'woobrevo', $erasers );
		$this->assertSame( 'woobrevo', array_key_last( $erasers ), 'runs after the other erasers' );
		$this->assertIsCallable( $erasers['woobrevo']['callback'] );
		$exporters = apply_filters( 'wp_privacy_personal_data_exporters', array() );
		$this->assertArrayHasKey( 'woobrevo', $exporters );
		$this->assertIsCallable( $exporters['woobrevo']['callback'] );
	}

	public function test_erasure_queues_one_erase_and_removes_what_the_plugin_holds(): void {
		global $wpdb;
		list( $user_id, $order_id, $cart_id ) = $this->person();
		$other                                = $this->make_customer( 'keep.me@example.com' );
		$this->new_request();
		( new WooBrevo_Outbox() )->add( 'customer', $other->get_id(), 'updated' );
		$this->new_request();
		$person = array( 'customer:' . $user_id, 'order:' . $order_id, 'cart:' . $cart_id );
		$before = $this->row_keys();
		$kept   = array();
		$theirs = array();
		foreach ( $before as $key ) {
			$object = implode( ':', array_slice( explode( ':', $key ), 0, 2 ) );
			if ( in_array( $object, $person, true ) ) {
				$theirs[ $object ] = true;
			} else {
				$kept[] = $key;
			}
		}
		$this->assertCount( 3, $theirs, 'the person has customer, order and cart rows waiting' );
		$this->assertContains( 'customer:' . $other->get_id() . ':customer.updated', $kept );

		$responses = $this->erase_through_wordpress( strtoupper( self::EMAIL ) );
		$this->assertCount( 1, $responses, 'everything on the first page' );
		$this->assertTrue( $responses[0]['done'] );
		$this->assertTrue( $responses[0]['items_removed'] );
		$this->assertFalse( $responses[0]['items_retained'] );
		$this->assertStringContainsString( 'erasure 1 is queued', $responses[0]['messages'][0] );
		$this->assertStringNotContainsString( 'example.com', implode( ' ', $responses[0]['messages'] ) );

		$this->assertSame( '', get_user_meta( $user_id, WooBrevo_Privacy::CONSENT_META, true ) );
		$this->assertFalse( wc_get_order( $order_id )->meta_exists( WooBrevo_Privacy::CONSENT_META ) );
		$this->assertSame( 0, (int) $wpdb->get_var( $wpdb->prepare( 'SELECT COUNT(*) FROM ' . WooBrevo_Schema::carts_table() . ' WHERE id = %d', $cart_id ) ) ); // phpcs:ignore

		$rows = $this->rows();
		$this->assertSame(
			array_merge( $kept, array( 'privacy:1:privacy.erase' ) ),
			$this->row_keys(),
			'the person\'s customer, order and cart rows are gone, the others stay, the erase comes last'
		);
		$this->assertSame( self::EMAIL, end( $rows )['extra']['email'] );
		$this->assertSame( '1', (string) get_option( WooBrevo_Options::ERASURE_SEQ ) );

		// The same request run again before it shipped: still one erase.
		$this->new_request();
		$again = $this->erase_through_wordpress( self::EMAIL );
		$this->assertStringContainsString( 'erasure 1 is queued', $again[0]['messages'][0] );
		$this->assertCount( 1, $this->rows( 'privacy' ) );
		// A later page (WordPress asks while done is false) does nothing.
		$this->assertFalse( ( new WooBrevo_Privacy() )->erase( self::EMAIL, 2 )['items_removed'] );
		$this->assertCount( 1, $this->rows( 'privacy' ) );
	}

	public function test_the_erase_event_ships_with_the_contract_payload_and_ids_count_up(): void {
		$this->erase_through_wordpress( self::EMAIL );
		$this->erase_through_wordpress( 'second.person@example.com' );
		$rows = $this->rows( 'privacy' );
		$this->assertSame( array( 1, 2 ), array_column( $rows, 'resource_id' ) );
		$claimed  = ( new WooBrevo_Outbox() )->claim( 'privacy-test', 10, 60 );
		$payloads = ( new WooBrevo_Payloads() )->build_many( $claimed, array() );
		$this->assertSame( array( 'id', 'email', 'date_modified_gmt' ), array_keys( $payloads[0] ) );
		$this->assertSame( 1, $payloads[0]['id'] );
		$this->assertSame( self::EMAIL, $payloads[0]['email'] );
		$this->assertMatchesRegularExpression( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/', $payloads[0]['date_modified_gmt'] );
		$this->assertSame( 2, $payloads[1]['id'] );
		( new WooBrevo_Outbox() )->release( 'privacy-test' );

		// Shipped to the real agent: accepted, and the outbox is empty.
		$stats = WooBrevo_Plugin::shipper()->tick();
		$this->assertNull( $stats['error'], (string) $stats['error'] );
		$this->assertSame( 2, $stats['acked'], 'the agent accepts privacy.erase' );
		$this->assertSame( array(), $this->rows() );
	}

	public function test_export_lists_the_plugins_data_and_the_agents(): void {
		list( $user_id, $order_id ) = $this->person();
		$customer                   = new WC_Customer( $user_id );
		$customer->set_first_name( 'Erin' );
		$customer->save();
		$stats = WooBrevo_Plugin::shipper()->tick(); // The agent now holds events of this e-mail.
		$this->assertNull( $stats['error'], (string) $stats['error'] );
		$this->new_request();
		( new WooBrevo_Outbox() )->add( 'order', $order_id, 'updated' );
		$this->new_request();

		$t0     = microtime( true );
		$export = $this->export( self::EMAIL );
		$this->assertLessThan( WooBrevo_Privacy::EXPORT_TIMEOUT + 1, microtime( true ) - $t0 );
		$this->assertTrue( $export['done'] );
		$groups = $this->by_group( $export['data'] );
		$this->assertArrayHasKey( 'woobrevo-consent', $groups );
		$this->assertCount( 2, $groups['woobrevo-consent'], 'the customer\'s record and the order\'s' );
		$values = $this->values( $groups['woobrevo-consent'][0] );
		$this->assertSame( 'yes', $values['Subscribed'] );
		$this->assertSame( 'checkout_classic', $values['Where'] );
		$this->assertSame( 'Send me news and offers', $values['Text shown'] );
		$this->assertCount( 1, $groups['woobrevo-carts'] );
		$this->assertSame( 'Privacy mug × 2', $this->values( $groups['woobrevo-carts'][0] )['Items'] );
		$this->assertSame( array( 'order.updated' ), array_map( fn( $i ) => $this->values( $i )['Event'], $groups['woobrevo-outbox'] ) );

		$this->assertArrayNotHasKey( 'woobrevo-agent', $groups, 'the agent answered' );
		$agent = array_filter( array_keys( $groups ), static fn( $id ) => str_starts_with( $id, 'woobrevo-agent-' ) );
		$this->assertNotSame( array(), $agent, 'the agent\'s groups: ' . wp_json_encode( array_keys( $groups ) ) );
		foreach ( $agent as $group_id ) {
			foreach ( $groups[ $group_id ] as $item ) {
				$this->assertIsString( $item['group_label'] );
				$this->assertIsString( $item['item_id'] );
				foreach ( $item['data'] as $pair ) {
					$this->assertIsString( $pair['name'] );
					$this->assertIsString( $pair['value'] );
				}
			}
		}
		$this->assertStringContainsString( 'customer.', wp_json_encode( $export['data'] ), 'the agent lists the inbox events of the e-mail' );
		// The exporter's own connection left the shipper's alone: the next tick still works.
		$this->new_request();
		( new WooBrevo_Outbox() )->add( 'customer', $user_id, 'updated' );
		$this->assertNull( WooBrevo_Plugin::shipper()->tick()['error'] );
	}

	public function test_export_without_the_agent_lists_the_plugins_data_and_says_so(): void {
		$this->person();
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', WsTestSupport::free_port() ) );
		$t0     = microtime( true );
		$export = $this->export( self::EMAIL );
		$this->assertLessThan( WooBrevo_Privacy::EXPORT_TIMEOUT + 1, microtime( true ) - $t0 );
		$groups = $this->by_group( $export['data'] );
		$this->assertCount( 2, $groups['woobrevo-consent'] );
		$this->assertCount( 1, $groups['woobrevo-carts'] );
		$this->assertCount( 1, $groups['woobrevo-agent'] );
		$message = $this->values( $groups['woobrevo-agent'][0] )['Not included'];
		$this->assertStringContainsString( 'could not be fetched', $message );
		$this->assertStringContainsString( 'cannot connect', $message );
		$this->assertStringNotContainsString( self::TOKEN, wp_json_encode( $export ) );

		// Not configured at all: said too.
		WooBrevo_Settings::set( 'token', '' );
		$groups = $this->by_group( $this->export( self::EMAIL )['data'] );
		$this->assertStringContainsString( 'no agent URL or site token', $this->values( $groups['woobrevo-agent'][0] )['Not included'] );

		// A token the agent refuses.
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$agent['port'] ) );
		WooBrevo_Settings::set( 'token', 'not-the-token_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH' );
		$groups = $this->by_group( $this->export( self::EMAIL )['data'] );
		$this->assertStringContainsString( 'token refused', $this->values( $groups['woobrevo-agent'][0] )['Not included'] );
	}

	public function test_card_paid_order_ships_no_payment_field_and_no_card_number(): void {
		$customer = $this->make_customer( 'card.payer@example.com' );
		$order    = wc_create_order( array( 'customer_id' => $customer->get_id() ) );
		$order->add_product( $this->make_product( 'Card mug', '15.00' ), 1 );
		$order->set_billing_email( 'card.payer@example.com' );
		$order->calculate_totals();
		$order->save();
		$paid = ( new WCD_Gateway_Card() )->process_payment( $order->get_id() );
		$this->assertSame( 'success', $paid['result'] );
		$order = wc_get_order( $order->get_id() );
		$this->assertSame( 'processing', $order->get_status() );
		$this->assertSame( WCD_Gateway_Card::TITLE, $order->get_payment_method_title() );
		$this->assertSame( WCD_Gateway_Card::CARD_NUMBER, $order->get_meta( '_wcd_card_number' ) );

		$watch = array( 'order' => array( '_wcd_card_number', '_stripe_customer_id', '_transaction_id', 'wcd_payment_note' ) );
		$row   = array(
			'resource'    => 'order',
			'resource_id' => $order->get_id(),
			'topic'       => 'order.updated',
			'extra'       => array(),
		);
		$payloads = new WooBrevo_Payloads();
		$alone    = $payloads->build( $row, $watch );
		$many     = $payloads->build_many( array( $row ), $watch )[0];
		foreach ( array( $alone, $many ) as $body ) {
			$json = (string) wp_json_encode( $body );
			foreach ( WooBrevo_Payloads::PAYMENT_FIELDS as $field ) {
				$this->assertArrayNotHasKey( $field, $body );
			}
			foreach ( array( 'transaction_id', '_stripe_', 'card_number', 'payment_url', 'customer_ip', 'user_agent', WCD_Gateway_Card::TITLE, '203.0.113.42', 'ch_wcd_', '4242 4242', '4242424242424242' ) as $needle ) {
				$this->assertStringNotContainsString( $needle, $json );
			}
			$this->assertSame( 'wcd_card', $body['payment_method'], 'which gateway is not a payment detail' );
			$this->assertSame( 'card.payer@example.com', $body['billing']['email'] );
			$meta = array_column( array_map( static fn( $m ) => $m instanceof JsonSerializable ? $m->jsonSerialize() : $m, $body['meta_data'] ), 'value', 'key' );
			$this->assertArrayNotHasKey( 'wcd_payment_note', $meta, 'payment meta by its words and by its gateway (PaymentMetaTest)' );
		}
	}

	public function test_card_numbers_are_found_by_the_luhn_check_only(): void {
		$this->assertTrue( WooBrevo_Payloads::luhn( '4242424242424242' ) );
		$this->assertFalse( WooBrevo_Payloads::luhn( '4242424242424241' ) );
		$cases = array(
			'card 4242-4242-4242-4242.'        => 'card [removed].',
			'4111 1111 1111 1111'              => '[removed]',
			'378282246310005 (amex)'           => '[removed] (amex)',
			'not a card 4242 4242 4242 4241'   => 'not a card 4242 4242 4242 4241',
			'phone +33 6 12 34 56 78'          => 'phone +33 6 12 34 56 78',
			'order 123456789012 (12 digits)'   => 'order 123456789012 (12 digits)',
			'2026-12-06T06:29:58'              => '2026-12-06T06:29:58',
		);
		foreach ( $cases as $in => $out ) {
			$this->assertSame( $out, WooBrevo_Payloads::without_card_numbers( $in ), $in );
		}
		$this->assertSame(
			array(
				'a' => array( '[removed]' ),
				'n' => 4242424242424242,
			),
			WooBrevo_Payloads::without_card_numbers(
				array(
					'a' => array( '4242424242424242' ),
					'n' => 4242424242424242,
				)
			),
			'strings only: a number stays a number'
		);
	}

	/** The outbox rows as resource:id:topic. */
	private function row_keys(): array {
		return array_map( static fn( $r ) => $r['resource'] . ':' . $r['resource_id'] . ':' . $r['topic'], $this->rows() );
	}

	public function test_payment_meta_is_dropped_at_any_depth(): void {
		$body = WooBrevo_Payloads::minimized(
			array(
				'transaction_id' => 'ch_1',
				'meta_data'      => array(
					array(
						'key'   => '_Stripe_Intent',
						'value' => 'pi_1',
					),
					array(
						'key'   => '_woobrevo_consent',
						'value' => array( 'subscribed' => true ),
					),
				),
				'line_items'     => array(
					array(
						'name'      => 'Mug',
						'meta_data' => array(
							array(
								'key'   => 'gift_card_code',
								'value' => 'GC-1',
							),
							array(
								'key'   => 'Colour',
								'value' => 'Red',
							),
						),
					),
				),
			),
			'order'
		);
		$this->assertArrayNotHasKey( 'transaction_id', $body );
		$this->assertSame( array( '_woobrevo_consent' ), array_column( $body['meta_data'], 'key' ) );
		$this->assertSame( array( 'Colour' ), array_column( $body['line_items'][0]['meta_data'], 'key' ) );
		// Not an order: its fields stay (only orders have payment fields); its payment meta goes.
		$product = WooBrevo_Payloads::minimized(
			array(
				'transaction_id' => 'x',
				'meta_data'      => array(
					array(
						'key'   => '_payment_token',
						'value' => 't',
					),
				),
			),
			'product'
		);
		$this->assertSame( 'x', $product['transaction_id'] );
		$this->assertSame( array(), $product['meta_data'] );
	}

	public function test_a_products_barcode_is_not_taken_for_a_card_number(): void {
		$product = $this->make_product( 'Barcode pen', '3.00' );
		$product->set_sku( '5901234123457' ); // The EAN-13 example, which happens to pass the Luhn check.
		$product->save();
		$body = ( new WooBrevo_Payloads() )->build(
			array(
				'resource'    => 'product',
				'resource_id' => $product->get_id(),
				'topic'       => 'product.updated',
				'extra'       => array(),
			),
			array()
		);
		$this->assertSame( '5901234123457', $body['sku'] );
	}

	private function export( string $email ): array {
		$exporters = apply_filters( 'wp_privacy_personal_data_exporters', array() );
		return call_user_func( $exporters['woobrevo']['callback'], $email, 1 );
	}

	/** Export items by group id. */
	private function by_group( array $data ): array {
		$out = array();
		foreach ( $data as $item ) {
			$this->assertSame( array( 'group_id', 'group_label', 'item_id', 'data' ), array_keys( $item ) );
			$out[ $item['group_id'] ][] = $item;
		}
		return $out;
	}

	/** An item's data as name => value. */
	private function values( array $item ): array {
		return array_column( $item['data'], 'value', 'name' );
	}
}
