<?php
/**
 * Test-only must-use plugin that tests/e2e/test_admin_browser.py copies into the test WordPress:
 * the WooCommerce test double has no admin screens, so for the browser (requests served by PHP's
 * built-in server only) it adds the top-level WooCommerce menu as WooCommerce does (admin_menu,
 * priority 9, slug `woocommerce`), which WooBrevo's screen hangs under. A real WooCommerce
 * (WOOBREVO_WC_DIR) has that menu already; then this does nothing.
 *
 * @package WooBrevo\Tests
 */

if ( 'cli-server' === PHP_SAPI ) {
	add_action(
		'admin_menu',
		static function () {
			global $admin_page_hooks;
			if ( isset( $admin_page_hooks['woocommerce'] ) ) {
				return;
			}
			add_menu_page(
				'WooCommerce',
				'WooCommerce',
				'manage_woocommerce',
				'woocommerce',
				static function () {
					echo '<div class="wrap"><h1>WooCommerce</h1><p>The WooCommerce test double has no screens of its own.</p></div>';
				},
				'dashicons-cart',
				'55.5'
			);
			add_submenu_page( 'woocommerce', 'Home', 'Home', 'manage_woocommerce', 'woocommerce' );
		},
		9
	);
}
