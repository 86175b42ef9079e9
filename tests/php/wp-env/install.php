<?php
/**
 * Installs the test WordPress that tests/php/run.sh copied: `php install.php DIR single|network|activate`.
 * single: wp_install(); network: turns it into a subdirectory multisite with a second site /shop2/;
 * activate: activates WooCommerce (when WOOBREVO_WC_DIR is set) and WooBrevo (network-wide on multisite).
 * Each step is its own process because the multisite constants change between them.
 *
 * @package WooBrevo\Tests
 */

$woobrevo_dir  = $argv[1];
$woobrevo_step = $argv[2];
putenv( 'WOOBREVO_WP_DIR=' . $woobrevo_dir );

if ( 'activate' !== $woobrevo_step ) {
	define( 'WP_INSTALLING', true );
}
if ( 'network' === $woobrevo_step ) {
	define( 'WP_INSTALLING_NETWORK', true );
}

/** The install mails the admin; there is no mail here. */
function wp_new_blog_notification() {}

require __DIR__ . '/load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

switch ( $woobrevo_step ) {
	case 'single':
		$result = wp_install( 'WooBrevo Test', 'admin', 'admin@woobrevo.test', false, '', 'password' );
		update_option( 'siteurl', 'http://woobrevo.test' );
		update_option( 'home', 'http://woobrevo.test' );
		update_option( 'permalink_structure', '/%postname%/' );
		echo 'installed user ', $result['user_id'], "\n";
		break;

	case 'network':
		require_once ABSPATH . 'wp-admin/includes/network.php';
		// Not multisite yet, so wpdb has no names for the network tables: set them first.
		foreach ( $wpdb->tables( 'ms_global' ) as $woobrevo_table => $woobrevo_prefixed ) {
			$wpdb->$woobrevo_table = $woobrevo_prefixed;
		}
		install_network();
		$result = populate_network( 1, 'woobrevo.test', 'admin@woobrevo.test', 'WooBrevo Network', '/', false );
		if ( is_wp_error( $result ) ) {
			fwrite( STDERR, $result->get_error_message() . "\n" );
			exit( 1 );
		}
		file_put_contents(
			$woobrevo_dir . '/wp-config-multisite.php',
			"<?php\ndefine( 'WP_ALLOW_MULTISITE', true );\ndefine( 'MULTISITE', true );\n" .
			"define( 'SUBDOMAIN_INSTALL', false );\ndefine( 'DOMAIN_CURRENT_SITE', 'woobrevo.test' );\n" .
			"define( 'PATH_CURRENT_SITE', '/' );\ndefine( 'SITE_ID_CURRENT_SITE', 1 );\ndefine( 'BLOG_ID_CURRENT_SITE', 1 );\n"
		);
		echo "network installed\n";
		break;

	case 'activate':
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		wp_set_current_user( 1 );
		if ( is_multisite() && ! get_site( 2 ) ) {
			$site_id = wp_insert_site(
				array(
					'domain'  => 'woobrevo.test',
					'path'    => '/shop2/',
					'title'   => 'Shop 2',
					'user_id' => 1,
				)
			);
			if ( is_wp_error( $site_id ) ) {
				fwrite( STDERR, $site_id->get_error_message() . "\n" );
				exit( 1 );
			}
		}
		$plugins = array( 'woobrevo/woobrevo.php' );
		if ( getenv( 'WOOBREVO_WC_DIR' ) ) {
			array_unshift( $plugins, 'woocommerce/woocommerce.php' );
		}
		foreach ( $plugins as $plugin ) {
			$result = activate_plugin( $plugin, '', is_multisite() );
			if ( is_wp_error( $result ) ) {
				fwrite( STDERR, $plugin . ': ' . $result->get_error_message() . "\n" );
				exit( 1 );
			}
			echo 'activated ', $plugin, "\n";
		}
		break;

	default:
		fwrite( STDERR, "unknown step $woobrevo_step\n" );
		exit( 2 );
}
// wp_die() exits with status 0 on the command line: run.sh looks for this line instead.
echo "WOOBREVO-STEP-OK\n";
