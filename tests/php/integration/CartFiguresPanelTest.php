<?php
/**
 * The status panel's "Abandoned carts": the figures of the agent's last welcome, as the Shipper
 * keeps them (WooBrevo_Settings `cart_figures`), rendered with the store's currency.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Settings
 * @covers WooBrevo_Protocol
 */
final class CartFiguresPanelTest extends WooBrevo_TestCase {

	/** A welcome as the agent sends it, figures included (docs/protocol.md). */
	private const WELCOME = '{"type":"welcome","site":"default","carts":{"enabled":true,"link_lifetime":604800,"figures":{"active":7,"abandoned":3,"recovered":1,"expired":2,"converted":4,"emptied":0,"recovered_revenue":39.0,"recovery_rate":0.3333}}}';

	/** 2026-12-06 01:25:05 UTC. */
	private const AT = 1796520305;

	private function render(): string {
		require_once ABSPATH . 'wp-admin/includes/template.php'; // wp-admin loads it for every screen.
		wp_set_current_user( $this->admin_id() );
		ob_start();
		try {
			( new WooBrevo_Settings() )->render();
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	/**
	 * Keeps figures as the Shipper does after a welcome.
	 *
	 * @param string $welcome A welcome.
	 */
	private static function remember( string $welcome ): void {
		WooBrevo_Settings::set(
			'cart_figures',
			array(
				'figures' => WooBrevo_Protocol::parse( $welcome )['cart_figures'],
				'at'      => self::AT,
			)
		);
	}

	/**
	 * The panel's value of a row.
	 *
	 * @param string $html  The screen.
	 * @param string $label The row's heading.
	 * @return string|null
	 */
	private static function cell( string $html, string $label ): ?string {
		$table = preg_match( '#<table class="widefat striped woobrevo-cart-figures">(.*?)</table>#s', $html, $m ) ? $m[1] : '';
		return preg_match( '#<th>' . preg_quote( $label, '#' ) . '</th><td>(.*?)</td>#s', $table, $c ) ? $c[1] : null;
	}

	public function test_no_figures_before_the_first_welcome_that_carries_them(): void {
		delete_option( WooBrevo_Options::CART_FIGURES );
		$html = $this->render();
		$this->assertStringContainsString( 'No figures yet', $html );
		$this->assertStringNotContainsString( 'woobrevo-cart-figures"><tr>', $html );
	}

	public function test_the_figures_with_the_store_currency_and_their_time(): void {
		update_option( 'woocommerce_currency', 'EUR' );
		self::remember( self::WELCOME );
		$html = $this->render();
		$this->assertStringNotContainsString( 'No figures yet', $html );
		$this->assertSame( '7', self::cell( $html, 'Active' ) );
		$this->assertSame( '3', self::cell( $html, 'Abandoned' ) );
		$this->assertSame( '1', self::cell( $html, 'Recovered' ) );
		$this->assertSame( '2', self::cell( $html, 'Expired' ) );
		$this->assertSame( '33.3%', self::cell( $html, 'Recovery rate' ) );
		$revenue = (string) self::cell( $html, 'Recovered revenue' );
		$this->assertStringContainsString( '39.00', $revenue );
		$this->assertMatchesRegularExpression( '/EUR|&euro;|€/', $revenue, "in the store's currency" );
		$this->assertStringContainsString( 'As of 2026-12-06 01:25:05 UTC.', $html );
	}

	public function test_nothing_abandoned_yet(): void {
		self::remember( '{"type":"welcome","carts":{"enabled":true,"link_lifetime":604800,"figures":{"active":1,"abandoned":0,"recovered":0,"expired":0,"converted":0,"emptied":0,"recovered_revenue":0.0,"recovery_rate":null}}}' );
		$html = $this->render();
		$this->assertSame( '1', self::cell( $html, 'Active' ) );
		$this->assertSame( 'none abandoned yet', self::cell( $html, 'Recovery rate' ) );
	}

	public function test_carts_switched_off_by_the_agent(): void {
		self::remember( self::WELCOME );
		WooBrevo_Settings::set( 'carts_enabled', '0' );
		$html = $this->render();
		$this->assertStringContainsString( 'switched off for this site', $html );
		$this->assertNull( self::cell( $html, 'Active' ) );
	}
}
