<?php
/**
 * Router for PHP's built-in web server serving the test WordPress's REST API to the agent's
 * poller (tests/chaos, the polling scenario):
 *
 *   WOOBREVO_WP_HOME=http://127.0.0.1:PORT php -S 127.0.0.1:PORT -t WP_DIR wp_rest_router.php
 *
 * The site's home is the URL it is served at (WP_HOME, as a wp-config.php sets it): WooCommerce
 * rebuilds the URL an OAuth 1.0a signature covers from the home URL, not from the Host header
 * (NOTES §3), so the agent's `store_url` and the home must agree as on a live store. The CLI
 * processes of the same WordPress (the traffic) keep their own home. The rest is
 * tests/e2e/wp_router.php (what Apache's .htaccess does for WordPress).
 *
 * @package WooBrevo\Tests
 */

$woobrevo_home = (string) getenv( 'WOOBREVO_WP_HOME' );
if ( '' === $woobrevo_home ) {
	http_response_code( 500 );
	echo "WOOBREVO_WP_HOME is not set\n";
	return true;
}
define( 'WP_HOME', $woobrevo_home );
define( 'WP_SITEURL', $woobrevo_home );

return require dirname( __DIR__ ) . '/e2e/wp_router.php';
