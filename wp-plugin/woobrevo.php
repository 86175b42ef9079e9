<?php
/**
 * Plugin Name:       WooBrevo
 * Plugin URI:        https://github.com/woobrevo/woobrevo
 * Description:       Captures WooCommerce changes into a durable outbox and ships them to the WooBrevo agent, which keeps Brevo in sync.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.0
 * Author:            WooBrevo
 * License:           GPL-2.0-or-later
 * Text Domain:       woobrevo
 * Network:           true
 * WC requires at least: 7.0
 *
 * @package WooBrevo
 */

defined( 'ABSPATH' ) || exit;

define( 'WOOBREVO_VERSION', '0.1.0' );
define( 'WOOBREVO_FILE', __FILE__ );
define( 'WOOBREVO_DIR', __DIR__ );
define( 'WOOBREVO_MIN_WP', '6.1' );
define( 'WOOBREVO_MIN_WC', '7.0' );
define( 'WOOBREVO_MIN_PHP', '8.0' );

// A class WooBrevo_Foo_Bar lives in includes/class-woobrevo-foo-bar.php.
spl_autoload_register(
	static function ( $class_name ) {
		if ( 0 === strpos( $class_name, 'WooBrevo_' ) ) {
			$file = __DIR__ . '/includes/class-' . strtolower( str_replace( '_', '-', $class_name ) ) . '.php';
			if ( is_file( $file ) ) {
				require_once $file;
			}
		}
	}
);

// Older PHP cannot even parse the class files (typed properties, mixed): say so and stop here.
if ( version_compare( PHP_VERSION, WOOBREVO_MIN_PHP, '<' ) ) {
	add_action(
		'admin_notices',
		static function () {
			/* translators: %s: the PHP version WooBrevo needs. */
			echo '<div class="notice notice-error"><p>' . esc_html( sprintf( __( 'WooBrevo needs PHP %s or newer; it is inactive.', 'woobrevo' ), WOOBREVO_MIN_PHP ) ) . '</p></div>';
		}
	);
	return;
}

// HPOS compatibility is declared before WooCommerce initialises (WooCommerce's HPOS recipe book).
add_action(
	'before_woocommerce_init',
	static function () {
		if ( class_exists( \Automattic\WooCommerce\Utilities\FeaturesUtil::class ) ) {
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'custom_order_tables', WOOBREVO_FILE, true );
		}
	}
);

register_activation_hook( __FILE__, array( 'WooBrevo_Schema', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'WooBrevo_Plugin', 'deactivate' ) );

add_action( 'plugins_loaded', array( 'WooBrevo_Plugin', 'boot' ), 20 );
