<?php
/**
 * REST API keys of the test WordPress for the chaos suite's polling scenario (tests/chaos):
 *
 *   WOOBREVO_WP_DIR=… php wp_rest.php api-key DESCRIPTION PERMISSIONS
 *
 * Makes a key for the admin as WooCommerce → Settings → Advanced → REST API → Add key does
 * (the WooCommerce double keeps it as WooCommerce does: tests/php/wc-double/wc-double-auth.php)
 * and prints it once: {"key_id", "consumer_key", "consumer_secret"}.
 *
 * @package WooBrevo\Tests
 */

require dirname( __DIR__ ) . '/php/wp-env/load.php';

$woobrevo_args = array_slice( $argv, 1 );
$woobrevo_cmd  = (string) array_shift( $woobrevo_args );

if ( 'api-key' !== $woobrevo_cmd || count( $woobrevo_args ) !== 2 ) {
	fwrite( STDERR, "usage: php wp_rest.php api-key DESCRIPTION read|write|read_write\n" );
	exit( 2 );
}
list( $woobrevo_description, $woobrevo_permissions ) = $woobrevo_args;
if ( ! in_array( $woobrevo_permissions, array( 'read', 'write', 'read_write' ), true ) ) {
	fwrite( STDERR, "permissions: read, write or read_write\n" );
	exit( 2 );
}
if ( ! function_exists( 'wcd_create_api_key' ) ) {
	// A real WooCommerce: its own screen makes keys (WC_Auth); this script serves the double.
	fwrite( STDERR, "no WooCommerce double loaded: make the key in WooCommerce's REST API screen\n" );
	exit( 1 );
}
add_filter( 'woobrevo_ship_on_shutdown', '__return_false' );
echo wp_json_encode( wcd_create_api_key( 1, $woobrevo_description, $woobrevo_permissions ) ), "\n";
