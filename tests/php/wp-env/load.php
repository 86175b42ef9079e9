<?php
/**
 * Loads a test WordPress installed by tests/php/run.sh. Include it at file scope:
 *   WOOBREVO_WP_DIR=/tmp/woobrevo-php.X/wp-single php -r 'require getenv("WOOBREVO_WP_LOADER"); ...'
 * Optional: WOOBREVO_WP_PATH=/shop2/ to load another site of the multisite network.
 *
 * @package WooBrevo\Tests
 */

$woobrevo_wp_dir = getenv( 'WOOBREVO_WP_DIR' );
if ( ! $woobrevo_wp_dir || ! is_file( $woobrevo_wp_dir . '/wp-load.php' ) ) {
	fwrite( STDERR, "WOOBREVO_WP_DIR does not name a WordPress installed by tests/php/run.sh\n" );
	exit( 2 );
}
$woobrevo_wp_path = getenv( 'WOOBREVO_WP_PATH' ) ? getenv( 'WOOBREVO_WP_PATH' ) : '/';

// WordPress reads the request from $_SERVER; a CLI process has to provide one.
$_SERVER['HTTP_HOST']       = 'woobrevo.test';
$_SERVER['SERVER_NAME']     = 'woobrevo.test';
$_SERVER['SERVER_PORT']     = '80';
$_SERVER['REQUEST_URI']     = $woobrevo_wp_path;
$_SERVER['REQUEST_METHOD']  = 'GET';
$_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
$_SERVER['PHP_SELF']        = $woobrevo_wp_path . 'index.php';
$_SERVER['SCRIPT_NAME']     = $_SERVER['PHP_SELF'];
$_SERVER['REMOTE_ADDR']     = '127.0.0.1';

// WordPress expects to be loaded at global scope; these are the globals it sets (as in WordPress's own test bootstrap).
global $wpdb, $table_prefix, $current_site, $current_blog, $wp_rewrite, $shortcode_tags, $wp, $phpmailer,
	$wp_theme_directories, $wp_version, $wp_db_version, $domain, $path, $site_id, $public, $wp_filter,
	$wp_actions, $wp_current_filter, $wp_roles, $wp_query, $wp_the_query, $wp_locale, $wp_embed, $wp_widget_factory,
	$pagenow, $wp_plugin_paths, $wp_meta_boxes, $menu, $submenu, $admin_page_hooks, $_wp_submenu_nopriv,
	$_registered_pages, $_parent_pages, $plugin_page, $wp_scripts, $wp_styles, $blog_id, $super_admins;

require_once $woobrevo_wp_dir . '/wp-load.php';
