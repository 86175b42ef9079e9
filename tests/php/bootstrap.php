<?php
/**
 * PHPUnit bootstrap. WOOBREVO_TEST_SUITE=unit loads no WordPress (pure classes only);
 * integration and multisite load the WordPress that tests/php/run.sh installed (WOOBREVO_WP_DIR),
 * with the plugin active and the WooCommerce double (or a real WooCommerce) loaded.
 *
 * @package WooBrevo\Tests
 */

define( 'WOOBREVO_TESTS_DIR', __DIR__ );
define( 'WOOBREVO_REPO_DIR', dirname( __DIR__, 2 ) );

$woobrevo_suite = getenv( 'WOOBREVO_TEST_SUITE' ) ? getenv( 'WOOBREVO_TEST_SUITE' ) : 'unit';

if ( 'unit' === $woobrevo_suite || ! getenv( 'WOOBREVO_WP_DIR' ) ) {
	// Class files guard on ABSPATH; pure classes need nothing else from WordPress.
	if ( ! defined( 'ABSPATH' ) ) {
		define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' );
	}
	spl_autoload_register(
		static function ( string $class ): void {
			if ( 0 === strpos( $class, 'WooBrevo_' ) ) {
				$file = WOOBREVO_REPO_DIR . '/wp-plugin/includes/class-' . strtolower( str_replace( '_', '-', $class ) ) . '.php';
				if ( is_file( $file ) ) {
					require_once $file;
				}
			}
		}
	);
	return;
}

require __DIR__ . '/wp-env/load.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
require_once __DIR__ . '/includes/class-woobrevo-testcase.php';

// Tests never ship at shutdown (the shipper tests drive WooBrevo_Shipper themselves).
add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
// PHPUnit has printed before any test: a real WooCommerce's session cookie cannot be sent (it would raise a notice).
add_filter( 'woocommerce_set_cookie_enabled', '__return_false' );
add_filter(
	'wp_die_handler',
	static function () {
		return WooBrevo_TestCase::die_handler();
	}
);
