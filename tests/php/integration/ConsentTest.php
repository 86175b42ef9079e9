<?php
/**
 * The marketing opt-in (issue 14, item 1): the box on the classic checkout, the block checkout
 * (WooCommerce's additional checkout fields API), registration and My Account, each with and
 * without a tick; the consent record on the order and the customer (never downgraded by an
 * unticked checkout, withdrawn only from My Account); the payloads carrying it; the settings
 * and the status panel (the agent's consent mode from the welcome).
 *
 * @package WooBrevo\Tests
 */

use Automattic\WooCommerce\Blocks\Domain\Services\CheckoutFields;
use Automattic\WooCommerce\Blocks\Package;

/**
 * @covers WooBrevo_Consent
 * @covers WooBrevo_Payloads
 * @covers WooBrevo_Settings
 */
final class ConsentTest extends WooBrevo_TestCase {

	private const LABEL = 'Send me the Lyon shop letter';

	protected function setUp(): void {
		parent::setUp();
		$this->forget_block_field();
		$this->clear_outbox();
	}

	protected function tearDown(): void {
		$this->forget_block_field();
		parent::tearDown();
	}

	/** The block field is registered once per request: a test is a request of its own. */
	private function forget_block_field(): void {
		if ( WooBrevo_Consent::block_checkout_supported() ) {
			Package::container()->get( CheckoutFields::class )->deregister_checkout_field( WooBrevo_Consent::BLOCK_FIELD );
		}
		WooBrevo_Consent::reset_request();
	}

	private function optin( bool $on, array $forms = WooBrevo_Consent::FORMS ): void {
		WooBrevo_Settings::set( 'optin_enabled', $on ? '1' : '0' );
		WooBrevo_Settings::set( 'optin_label', self::LABEL );
		WooBrevo_Settings::set( 'optin_forms', $forms );
	}

	private function output( string $hook ): string {
		ob_start();
		try {
			do_action( $hook );
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	/** What the classic checkout posts: its nonce, our hidden field when the box showed, the box when ticked. */
	private function post_checkout( ?bool $ticked ): void {
		$_POST = array( 'woocommerce-process-checkout-nonce' => wp_create_nonce( 'woocommerce-process_checkout' ) );
		if ( null !== $ticked ) {
			$_POST[ WooBrevo_Consent::FIELD_SHOWN ] = WooBrevo_Consent::SOURCE_CLASSIC;
		}
		if ( $ticked ) {
			$_POST[ WooBrevo_Consent::FIELD ] = '1';
		}
	}

	/** WC_Checkout::create_order(): the hook on the new order, then its first save. */
	private function classic_checkout( int $customer_id, ?bool $ticked ): WC_Order {
		$this->post_checkout( $ticked );
		$order = new WC_Order();
		$order->set_customer_id( $customer_id );
		$order->set_billing_email( $customer_id ? get_userdata( $customer_id )->user_email : 'guest@example.com' );
		$order->set_status( 'pending' );
		do_action( 'woocommerce_checkout_create_order', $order, array() );
		$order->save();
		$_POST = array();
		return wc_get_order( $order->get_id() );
	}

	/**
	 * The Store API checkout: the order, each posted additional field persisted as WooCommerce's
	 * CheckoutTrait does, then `woocommerce_store_api_checkout_order_processed`.
	 */
	private function block_checkout( int $customer_id, ?bool $ticked ): WC_Order {
		$order = new WC_Order();
		$order->set_customer_id( $customer_id );
		$order->set_billing_email( $customer_id ? get_userdata( $customer_id )->user_email : 'guest@example.com' );
		$order->set_status( 'checkout-draft' );
		$order->save();
		if ( null !== $ticked ) {
			$fields = Package::container()->get( CheckoutFields::class );
			$this->assertTrue( $fields->is_field( WooBrevo_Consent::BLOCK_FIELD ) );
			$fields->persist_field_for_order( WooBrevo_Consent::BLOCK_FIELD, $ticked, $order, 'other', false );
		}
		$order->set_status( 'pending' );
		$order->save();
		do_action( 'woocommerce_store_api_checkout_order_processed', $order );
		return wc_get_order( $order->get_id() );
	}

	private function assert_record( $record, bool $subscribed, string $source ): void {
		$this->assertIsArray( $record );
		$this->assertSame( array( 'subscribed', 'time', 'source', 'text' ), array_keys( $record ) );
		$this->assertSame( $subscribed, $record['subscribed'] );
		$this->assertSame( $source, $record['source'] );
		$this->assertSame( self::LABEL, $record['text'] );
		$this->assertMatchesRegularExpression( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/', $record['time'] );
		$this->assertLessThanOrEqual( 5, abs( time() - strtotime( $record['time'] ) ) );
	}

	private function user_record( int $user_id ) {
		wp_cache_flush();
		return get_user_meta( $user_id, WooBrevo_Consent::META_KEY, true );
	}

	private function subscriber( string $email = 'sub@example.com' ): int {
		$id = $this->make_customer( $email )->get_id();
		update_user_meta( $id, WooBrevo_Consent::META_KEY, array( 'subscribed' => true, 'time' => '2026-01-02T03:04:05Z', 'source' => 'registration', 'text' => 'Old text' ) );
		return $id;
	}

	/** The REST v3 body the shipper builds for a row. */
	private function payload( string $resource, int $id ): array {
		$body = ( new WooBrevo_Payloads() )->build(
			array(
				'resource'    => $resource,
				'resource_id' => $id,
				'topic'       => $resource . '.updated',
				'extra'       => array(),
			),
			array()
		);
		$this->assertIsArray( $body );
		return json_decode( (string) wp_json_encode( $body ), true );
	}

	private function consent_entry( array $body ): ?array {
		foreach ( $body['meta_data'] ?? array() as $meta ) {
			if ( WooBrevo_Consent::META_KEY === ( $meta['key'] ?? null ) ) {
				return $meta;
			}
		}
		return null;
	}

	// ---------------------------------------------------------------------------------------

	public function test_off_by_default_nothing_shown_nothing_stored(): void {
		$this->assertSame( '0', WooBrevo_Settings::get( 'optin_enabled' ) );
		$this->assertSame( 'Email me news and offers', WooBrevo_Consent::label() );
		foreach ( array( 'woocommerce_review_order_before_submit', 'woocommerce_register_form', 'woocommerce_edit_account_form' ) as $hook ) {
			$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->output( $hook ), $hook );
		}
		$this->assertFalse( ( new WooBrevo_Consent() )->action_woocommerce_init() );
		$order = $this->classic_checkout( 0, true ); // Posted anyway: the box is off.
		$this->assertFalse( $order->meta_exists( WooBrevo_Consent::META_KEY ) );
		$this->assertNull( $this->consent_entry( $this->payload( 'order', $order->get_id() ) ), 'no record, no entry' );
	}

	public function test_classic_checkout_box_shows_the_text(): void {
		$this->optin( true );
		$html = $this->output( 'woocommerce_review_order_before_submit' );
		$this->assertStringContainsString( 'name="woobrevo_subscribe"', $html );
		$this->assertStringContainsString( self::LABEL, $html );
		$this->assertStringContainsString( 'name="woobrevo_subscribe_shown" value="checkout_classic"', $html );
		$this->assertDoesNotMatchRegularExpression( '/name="woobrevo_subscribe"[^>]*checked/', $html );
		$this->optin( true, array( 'registration' ) );
		$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->output( 'woocommerce_review_order_before_submit' ), 'checkout not among the forms' );
	}

	public function test_classic_checkout_ticked_records_on_order_and_customer(): void {
		$this->optin( true );
		$customer = $this->make_customer( 'tick@example.com' )->get_id();
		wp_set_current_user( $customer );
		$this->clear_outbox();
		$order = $this->classic_checkout( $customer, true );
		$this->assert_record( $order->get_meta( WooBrevo_Consent::META_KEY, true ), true, 'checkout_classic' );
		$this->assert_record( $this->user_record( $customer ), true, 'checkout_classic' );
		$this->assertContains( array( 'customer.updated', $customer ), $this->topics( 'customer' ), 'the customer ships with the record' );
	}

	public function test_classic_checkout_unticked_records_no_on_the_order_only(): void {
		$this->optin( true );
		$customer = $this->make_customer( 'untick@example.com' )->get_id();
		$order    = $this->classic_checkout( $customer, false );
		$this->assert_record( $order->get_meta( WooBrevo_Consent::META_KEY, true ), false, 'checkout_classic' );
		$this->assertSame( '', $this->user_record( $customer ), 'the customer made no choice elsewhere' );
		$guest = $this->classic_checkout( 0, false );
		$this->assert_record( $guest->get_meta( WooBrevo_Consent::META_KEY, true ), false, 'checkout_classic' );
	}

	public function test_a_subscriber_sees_no_box_and_an_unticked_checkout_never_downgrades(): void {
		$this->optin( true );
		$customer = $this->subscriber();
		$before   = $this->user_record( $customer );
		wp_set_current_user( $customer );
		$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->output( 'woocommerce_review_order_before_submit' ) );
		$order = $this->classic_checkout( $customer, null ); // The box was not shown.
		$this->assertFalse( $order->meta_exists( WooBrevo_Consent::META_KEY ) );
		// A form from before the subscription, posted unticked (another tab): no on the order, the customer stays subscribed.
		$order = $this->classic_checkout( $customer, false );
		$this->assert_record( $order->get_meta( WooBrevo_Consent::META_KEY, true ), false, 'checkout_classic' );
		$this->assertSame( $before, $this->user_record( $customer ) );
		if ( WooBrevo_Consent::block_checkout_supported() ) {
			$this->assertFalse( ( new WooBrevo_Consent() )->action_woocommerce_init(), 'no block field for a subscriber' );
		}
	}

	public function test_classic_checkout_that_creates_an_account(): void {
		$this->optin( true );
		// WC_Checkout::process_checkout(): the nonce (a guest's) checked, `woocommerce_checkout_process`,
		// then the account made and logged in, then the order created for it.
		$this->post_checkout( true );
		do_action( 'woocommerce_checkout_process' );
		$customer = $this->make_customer( 'new-at-checkout@example.com' )->get_id();
		wp_set_current_user( $customer );
		$order = new WC_Order();
		$order->set_customer_id( $customer );
		$order->set_billing_email( 'new-at-checkout@example.com' );
		do_action( 'woocommerce_checkout_create_order', $order, array() );
		$order->save();
		$_POST = array();
		$this->assert_record( wc_get_order( $order->get_id() )->get_meta( WooBrevo_Consent::META_KEY, true ), true, 'checkout_classic' );
		$this->assert_record( $this->user_record( $customer ), true, 'checkout_classic' );
		// The choice served that order only.
		$other = new WC_Order();
		do_action( 'woocommerce_checkout_create_order', $other, array() );
		$this->assertFalse( $other->meta_exists( WooBrevo_Consent::META_KEY ) );
	}

	public function test_classic_checkout_needs_the_checkout_nonce(): void {
		$this->optin( true );
		$_POST = array(
			'woocommerce-process-checkout-nonce'   => 'forged',
			WooBrevo_Consent::FIELD_SHOWN          => WooBrevo_Consent::SOURCE_CLASSIC,
			WooBrevo_Consent::FIELD                => '1',
		);
		$order = new WC_Order();
		$order->set_billing_email( 'forged@example.com' );
		do_action( 'woocommerce_checkout_create_order', $order, array() );
		$order->save();
		$this->assertFalse( wc_get_order( $order->get_id() )->meta_exists( WooBrevo_Consent::META_KEY ) );
	}

	public function test_the_order_payload_of_the_checkout_request_carries_the_record(): void {
		$this->optin( true );
		$customer = $this->make_customer( 'ship@example.com' )->get_id();
		$this->clear_outbox();
		$order = $this->classic_checkout( $customer, true );
		$rows  = array_values( array_filter( $this->rows( 'order' ), static fn( $r ) => $r['resource_id'] === $order->get_id() ) );
		$this->assertCount( 1, $rows, 'one order row for the request' );
		$body  = ( new WooBrevo_Payloads() )->build_many( array( $rows[0] ), array() )[0];
		$body  = json_decode( (string) wp_json_encode( $body ), true );
		$entry = $this->consent_entry( $body );
		$this->assertNotNull( $entry, 'the order as shipped has the record' );
		$this->assertIsInt( $entry['id'] );
		$this->assert_record( $entry['value'], true, 'checkout_classic' );
		$this->assertSame( 1, count( array_filter( $body['meta_data'], static fn( $m ) => WooBrevo_Consent::META_KEY === $m['key'] ) ), 'once' );
		$customer_body = $this->payload( 'customer', $customer );
		$this->assert_record( $this->consent_entry( $customer_body )['value'], true, 'checkout_classic' );
		$this->assertGreaterThan( 0, $this->consent_entry( $customer_body )['id'] );
		$this->assertNull( $this->consent_entry( $this->payload( 'customer', $this->make_customer( 'none@example.com' )->get_id() ) ), 'never shown: no entry' );
	}

	public function test_block_checkout_field_and_records(): void {
		$this->optin( true );
		if ( ! WooBrevo_Consent::block_checkout_supported() ) {
			// WooCommerce < 8.9: no field, no record, and the settings screen says so.
			$this->assertFalse( ( new WooBrevo_Consent() )->action_woocommerce_init() );
			$order = $this->block_checkout( 0, null );
			$this->assertFalse( $order->meta_exists( WooBrevo_Consent::META_KEY ) );
			$this->assertStringContainsString( 'needs WooCommerce 8.9 or newer', WooBrevo_Settings::block_checkout_unsupported_text() );
			return;
		}
		$this->assertTrue( ( new WooBrevo_Consent() )->action_woocommerce_init() );
		$this->assertTrue( ( new WooBrevo_Consent() )->action_woocommerce_init(), 'once per request' );
		$fields = Package::container()->get( CheckoutFields::class );
		$field  = $fields->get_fields_for_location( 'order' )[ WooBrevo_Consent::BLOCK_FIELD ] ?? null;
		$this->assertIsArray( $field );
		$this->assertSame( 'checkbox', $field['type'] );
		$this->assertSame( self::LABEL, $field['label'] );
		$this->assertSame( 'order', $field['location'] );

		$customer = $this->make_customer( 'block@example.com' )->get_id();
		$order    = $this->block_checkout( $customer, true );
		$this->assertSame( '1', $order->get_meta( WooBrevo_Consent::BLOCK_FIELD_META, true ), "WooCommerce's own storage" );
		$this->assertTrue( $fields->get_field_from_object( WooBrevo_Consent::BLOCK_FIELD, $order, 'other' ) );
		$this->assert_record( $order->get_meta( WooBrevo_Consent::META_KEY, true ), true, 'checkout_block' );
		$this->assert_record( $this->user_record( $customer ), true, 'checkout_block' );
		$this->assert_record( $this->consent_entry( $this->payload( 'order', $order->get_id() ) )['value'], true, 'checkout_block' );

		$unticked = $this->block_checkout( $customer, false );
		$this->assertSame( '0', $unticked->get_meta( WooBrevo_Consent::BLOCK_FIELD_META, true ) );
		$this->assert_record( $unticked->get_meta( WooBrevo_Consent::META_KEY, true ), false, 'checkout_block' );
		$this->assert_record( $this->user_record( $customer ), true, 'checkout_block' ); // Not downgraded.

		$guest = $this->block_checkout( 0, false );
		$this->assert_record( $guest->get_meta( WooBrevo_Consent::META_KEY, true ), false, 'checkout_block' );
	}

	public function test_block_checkout_without_the_field_registered_records_nothing(): void {
		$this->optin( true );
		$order = $this->block_checkout( 0, null ); // Not registered in this request (box off when it started).
		$this->assertFalse( $order->meta_exists( WooBrevo_Consent::META_KEY ) );
	}

	public function test_registration_with_and_without_the_box(): void {
		$this->optin( true );
		$html = $this->output( 'woocommerce_register_form' );
		$this->assertStringContainsString( 'value="registration"', $html );
		$this->assertStringContainsString( self::LABEL, $html );
		$register = function ( string $email, ?bool $ticked ): int {
			$_POST = array(
				'email'                      => $email,
				'register'                   => 'Register',
				'woocommerce-register-nonce' => wp_create_nonce( 'woocommerce-register' ),
			);
			if ( null !== $ticked ) {
				$_POST[ WooBrevo_Consent::FIELD_SHOWN ] = 'registration';
			}
			if ( $ticked ) {
				$_POST[ WooBrevo_Consent::FIELD ] = '1';
			}
			$id    = wc_create_new_customer( $email, sanitize_user( strstr( $email, '@', true ) ), 'pw-' . wp_generate_password( 12, false ) );
			$_POST = array();
			$this->assertIsInt( $id );
			return $id;
		};
		$this->assert_record( $this->user_record( $register( 'reg-yes@example.com', true ) ), true, 'registration' );
		$this->assert_record( $this->user_record( $register( 'reg-no@example.com', false ) ), false, 'registration' );
		$this->assertSame( '', $this->user_record( $register( 'reg-none@example.com', null ) ), 'not the registration form' );
		$this->assertSame( '', $this->user_record( wc_create_new_customer( 'code@example.com', 'code', 'pw-' . wp_generate_password( 12, false ) ) ), 'made by code' );
		$this->optin( true, array( 'checkout' ) );
		$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->output( 'woocommerce_register_form' ) );
		$this->assertSame( '', $this->user_record( $register( 'reg-off@example.com', true ) ) );
	}

	public function test_my_account_reflects_and_withdraws(): void {
		$this->optin( true );
		$customer = $this->subscriber( 'acct@example.com' );
		wp_set_current_user( $customer );
		$html = $this->output( 'woocommerce_edit_account_form' );
		$this->assertMatchesRegularExpression( '/name="woobrevo_subscribe"[^>]*checked/', $html );
		$this->assertStringContainsString( 'value="my_account"', $html );
		$save = function ( int $user_id, bool $ticked ): void {
			$_POST = array(
				'save-account-details-nonce'  => wp_create_nonce( 'save_account_details' ),
				WooBrevo_Consent::FIELD_SHOWN => 'my_account',
			);
			if ( $ticked ) {
				$_POST[ WooBrevo_Consent::FIELD ] = '1';
			}
			do_action( 'woocommerce_save_account_details', $user_id );
			$_POST = array();
		};
		$before = $this->user_record( $customer );
		$save( $customer, true );
		$this->assertSame( $before, $this->user_record( $customer ), 'unchanged: the record keeps its time' );
		$this->clear_outbox();
		$save( $customer, false );
		$this->assert_record( $this->user_record( $customer ), false, 'my_account' );
		$this->assertContains( array( 'customer.updated', $customer ), $this->topics( 'customer' ) );
		$this->assertDoesNotMatchRegularExpression( '/name="woobrevo_subscribe"[^>]*checked/', $this->output( 'woocommerce_edit_account_form' ) );
		$save( $customer, true );
		$this->assert_record( $this->user_record( $customer ), true, 'my_account' );

		$never = $this->make_customer( 'never@example.com' )->get_id();
		wp_set_current_user( $never );
		$save( $never, false );
		$this->assertSame( '', $this->user_record( $never ), 'unticked, never subscribed: no change, no record' );

		wp_set_current_user( $customer );
		$_POST = array(
			'save-account-details-nonce'  => 'forged',
			WooBrevo_Consent::FIELD_SHOWN => 'my_account',
		);
		do_action( 'woocommerce_save_account_details', $customer );
		$this->assertTrue( $this->user_record( $customer )['subscribed'], 'a forged form changes nothing' );
		wp_set_current_user( $never );
		$save( $customer, false );
		$this->assertTrue( $this->user_record( $customer )['subscribed'], "another customer cannot change someone's choice" );
	}

	public function test_settings_save_and_screen(): void {
		wp_set_current_user( $this->admin_id() );
		$_POST = array(
			'_wpnonce'                            => wp_create_nonce( 'woobrevo_save' ),
			WooBrevo_Options::AGENT_URL           => '',
			WooBrevo_Options::OPTIN_ENABLED       => '1',
			WooBrevo_Options::OPTIN_LABEL         => ' <b>Yes</b>, the newsletter ',
			WooBrevo_Options::OPTIN_FORMS         => array( 'checkout', 'my_account', 'bogus' ),
		);
		$this->assertTrue( ( new WooBrevo_Settings() )->save_from_request() );
		$this->assertSame( '1', WooBrevo_Settings::get( 'optin_enabled' ) );
		$this->assertSame( 'Yes, the newsletter', WooBrevo_Consent::label() );
		$this->assertSame( array( 'checkout', 'my_account' ), WooBrevo_Consent::forms() );
		$this->assertFalse( WooBrevo_Consent::enabled_for( 'registration' ) );
		$html = $this->render();
		$this->assertStringContainsString( 'name="woobrevo_optin_enabled" value="1"  checked=\'checked\'', $html );
		$this->assertStringContainsString( 'value="Yes, the newsletter"', $html );
		$this->assertStringContainsString( 'not known yet', $html );
		$this->assertSame( WooBrevo_Consent::block_checkout_supported(), false === strpos( $html, 'woobrevo-optin-block-unsupported' ), 'the block checkout note only where the API is missing' );
	}

	private function render(): string {
		require_once ABSPATH . 'wp-admin/includes/template.php';
		wp_set_current_user( $this->admin_id() );
		ob_start();
		try {
			( new WooBrevo_Settings() )->render();
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	public function test_welcome_consent_mode_on_the_status_panel(): void {
		WooBrevo_Consent::remember_settings( array( 'mode' => 'required' ) );
		$this->assertSame( 'required', WooBrevo_Settings::get( 'consent_mode' ) );
		$html = $this->render();
		$this->assertStringContainsString( 'required: only people who opted in join marketing lists', $html );
		$this->assertStringContainsString( 'nobody will join your marketing lists', $html );
		$this->optin( true );
		$this->assertStringNotContainsString( 'nobody will join', $this->render() );
		WooBrevo_Consent::remember_settings( array( 'mode' => 'implied' ) );
		$this->optin( false );
		$html = $this->render();
		$this->assertStringContainsString( 'implied: every customer joins marketing lists', $html );
		$this->assertStringNotContainsString( 'nobody will join', $html );
	}
}
