<?php
/**
 * Router for PHP's built-in web server serving a test WordPress to a browser
 * (tests/e2e/test_admin_browser.py): `php -S 127.0.0.1:PORT -t WP_DIR wp_router.php`.
 *
 * What Apache's .htaccess does for WordPress: an existing file is served as it is (a .php file
 * runs); in a subdirectory multisite, /SITE/wp-admin/…, /SITE/wp-includes/…, /SITE/wp-content/…
 * and /SITE/FILE.php are the network's own files; anything else is a pretty permalink for
 * index.php.
 *
 * @package WooBrevo\Tests
 */

$woobrevo_root = rtrim( (string) $_SERVER['DOCUMENT_ROOT'], '/' );
$woobrevo_path = rawurldecode( (string) parse_url( (string) $_SERVER['REQUEST_URI'], PHP_URL_PATH ) );

if ( str_contains( $woobrevo_path, '..' ) ) {
	http_response_code( 400 );
	return true;
}
if ( is_file( $woobrevo_root . $woobrevo_path ) || is_file( $woobrevo_root . rtrim( $woobrevo_path, '/' ) . '/index.php' ) ) {
	return false; // The server serves it (a directory: its index.php).
}

// WordPress runs at file scope (its globals): the file to run is found here, then required below.
$woobrevo_run = '/index.php';

// A subdirectory multisite's /SITE/… (WordPress's own rewrite rules for it).
if ( preg_match( '#^/[_0-9a-zA-Z-]+(/(wp-(content|admin|includes).*|[^/]*\.php))$#', $woobrevo_path, $woobrevo_m ) ) {
	$woobrevo_file = $woobrevo_m[1];
	if ( is_file( $woobrevo_root . rtrim( $woobrevo_file, '/' ) . '/index.php' ) ) {
		$woobrevo_file = rtrim( $woobrevo_file, '/' ) . '/index.php';
	}
	if ( str_ends_with( $woobrevo_file, '.php' ) && is_file( $woobrevo_root . $woobrevo_file ) ) {
		$woobrevo_run = $woobrevo_file;
	} elseif ( is_file( $woobrevo_root . $woobrevo_file ) ) {
		$woobrevo_types = array(
			'css'   => 'text/css',
			'js'    => 'application/javascript',
			'svg'   => 'image/svg+xml',
			'png'   => 'image/png',
			'gif'   => 'image/gif',
			'woff2' => 'font/woff2',
		);
		$woobrevo_ext   = strtolower( pathinfo( $woobrevo_file, PATHINFO_EXTENSION ) );
		header( 'Content-Type: ' . ( $woobrevo_types[ $woobrevo_ext ] ?? 'application/octet-stream' ) );
		readfile( $woobrevo_root . $woobrevo_file );
		return true;
	}
}

// As if the file itself had been requested.
$_SERVER['SCRIPT_NAME']     = $woobrevo_run;
$_SERVER['PHP_SELF']        = $woobrevo_run;
$_SERVER['SCRIPT_FILENAME'] = $woobrevo_root . $woobrevo_run;
chdir( dirname( $woobrevo_root . $woobrevo_run ) );
require $woobrevo_root . $woobrevo_run;
return true;
