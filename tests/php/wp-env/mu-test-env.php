<?php
/**
 * Test-only must-use plugin (copied in by tests/php/run.sh): a test WordPress makes no HTTP calls
 * through the WordPress HTTP API and sends no mail. The plugin's websocket client does not use the
 * HTTP API, so it is unaffected.
 *
 * @package WooBrevo\Tests
 */

add_filter(
	'pre_http_request',
	static function () {
		return new WP_Error( 'woobrevo_test_no_http', 'HTTP requests are disabled in the test WordPress.' );
	},
	1
);
add_filter( 'pre_wp_mail', '__return_true' );
