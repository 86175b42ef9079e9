<?php
/**
 * Multisite opt-in: each site has its own opt-in settings and its own agent consent mode; a
 * user (network-wide) keeps one record, written by whichever site's form they used.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Consent
 * @covers WooBrevo_Settings
 */
final class NetworkConsentTest extends WooBrevo_TestCase {

	private function box( string $hook ): string {
		ob_start();
		try {
			do_action( $hook );
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	public function test_settings_and_mode_per_site(): void {
		WooBrevo_Settings::set( 'optin_enabled', '1' );
		WooBrevo_Settings::set( 'optin_label', 'Main site letter' );
		WooBrevo_Consent::remember_settings( array( 'mode' => 'required' ) );
		$this->assertStringContainsString( 'Main site letter', $this->box( 'woocommerce_register_form' ) );

		switch_to_blog( 2 );
		$this->assertSame( '0', WooBrevo_Settings::get( 'optin_enabled' ), 'off by default on the other site' );
		$this->assertSame( '', WooBrevo_Consent::agent_mode() );
		$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->box( 'woocommerce_register_form' ) );
		WooBrevo_Settings::set( 'optin_enabled', '1' );
		WooBrevo_Settings::set( 'optin_forms', array( 'my_account' ) );
		$this->assertSame( 'Email me news and offers', WooBrevo_Consent::label(), "the main site's text stays there" );
		$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->box( 'woocommerce_register_form' ), 'registration not among this site\'s forms' );
		WooBrevo_Consent::remember_settings( array( 'mode' => 'implied' ) );
		restore_current_blog();

		$this->assertSame( 'required', WooBrevo_Consent::agent_mode() );
		$this->assertSame( WooBrevo_Consent::FORMS, WooBrevo_Consent::forms() );
		$this->assertSame( '', WooBrevo_Consent::mode_warning(), 'required and the box on: no warning' );
	}

	public function test_a_record_written_on_one_site_is_the_users(): void {
		switch_to_blog( 2 );
		WooBrevo_Settings::set( 'optin_enabled', '1' );
		WooBrevo_Settings::set( 'optin_forms', array( 'my_account' ) );
		$user = $this->make_customer( 'net@example.com' )->get_id();
		$this->clear_outbox();
		wp_set_current_user( $user );
		$this->assertStringContainsString( 'value="my_account"', $this->box( 'woocommerce_edit_account_form' ) );
		$_POST = array(
			'save-account-details-nonce'  => wp_create_nonce( 'save_account_details' ),
			WooBrevo_Consent::FIELD_SHOWN => 'my_account',
			WooBrevo_Consent::FIELD       => '1',
		);
		do_action( 'woocommerce_save_account_details', $user );
		$_POST = array();
		$this->assertContains( array( 'customer.updated', $user ), $this->topics( 'customer' ), "site 2's outbox ships it" );
		restore_current_blog();
		$this->assertTrue( WooBrevo_Consent::user_subscribed( $user ), 'user meta is network-wide' );
		$this->assertStringNotContainsString( WooBrevo_Consent::FIELD_SHOWN, $this->box( 'woocommerce_edit_account_form' ), 'the main site shows no box: off there' );
	}
}
