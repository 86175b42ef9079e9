<?php
/**
 * Multisite: each site's status panel shows its own cart figures (its own option, written by
 * its own shipper's welcome).
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Settings
 */
final class NetworkCartFiguresTest extends WooBrevo_TestCase {

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
	 * A site's figures, as its shipper keeps them.
	 *
	 * @param int $active    Active carts.
	 * @param int $abandoned Abandoned carts.
	 */
	private static function remember( int $active, int $abandoned ): void {
		$welcome = array(
			'type'  => 'welcome',
			'carts' => array(
				'enabled' => true,
				'figures' => array(
					'active'            => $active,
					'abandoned'         => $abandoned,
					'recovered'         => 0,
					'expired'           => 0,
					'recovered_revenue' => 0.0,
					'recovery_rate'     => $abandoned ? 0.0 : null,
				),
			),
		);
		WooBrevo_Settings::set(
			'cart_figures',
			array(
				'figures' => WooBrevo_Protocol::parse( (string) wp_json_encode( $welcome ) )['cart_figures'],
				'at'      => time(),
			)
		);
	}

	public function test_each_site_shows_its_own_figures(): void {
		self::remember( 11, 0 );
		switch_to_blog( 2 );
		delete_option( WooBrevo_Options::CART_FIGURES );
		$this->assertStringContainsString( 'No figures yet', $this->render(), "site 1's figures are not site 2's" );
		self::remember( 22, 5 );
		$html_2 = $this->render();
		restore_current_blog();
		$html_1 = $this->render();
		$this->assertMatchesRegularExpression( '#<th>Active</th><td>22</td>#', $html_2 );
		$this->assertMatchesRegularExpression( '#<th>Abandoned</th><td>5</td>#', $html_2 );
		$this->assertMatchesRegularExpression( '#<th>Active</th><td>11</td>#', $html_1 );
		$this->assertMatchesRegularExpression( '#<th>Recovery rate</th><td>none abandoned yet</td>#', $html_1 );
	}
}
