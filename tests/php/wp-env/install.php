<?php
/**
 * Installs the test WordPress that tests/php/run.sh copied: `php install.php DIR single|network|activate|wc-install`.
 * single: wp_install(); network: turns it into a subdirectory multisite with a second site /shop2/;
 * activate: activates WooCommerce (when WOOBREVO_WC_DIR is set) and WooBrevo (network-wide on multisite);
 * wc-install: with a real WooCommerce, installs its tables and options on the site WOOBREVO_WP_PATH names
 * (activation installs them on the main site only; any other site gets them on its first request, which
 * a test that switch_to_blog()s there never makes).
 * Each step is its own process because the multisite constants change between them.
 *
 * @package WooBrevo\Tests
 */

$woobrevo_dir  = $argv[1];
$woobrevo_step = $argv[2];
putenv( 'WOOBREVO_WP_DIR=' . $woobrevo_dir );

if ( ! in_array( $woobrevo_step, array( 'activate', 'wc-install' ), true ) ) {
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

	case 'wc-install':
		if ( ! getenv( 'WOOBREVO_WC_DIR' ) ) {
			echo "no real WooCommerce: nothing to install\n";
			break;
		}
		if ( ! class_exists( 'WC_Install' ) ) {
			fwrite( STDERR, "WooCommerce is not loaded on this site\n" );
			exit( 1 );
		}
		// WC_Install::check_version() has already run on `init` for a site without woocommerce_version.
		if ( get_option( 'woocommerce_version' ) !== WC()->version ) {
			WC_Install::install();
		}
		if ( ! $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->prefix . 'wc_product_meta_lookup' ) ) ) {
			fwrite( STDERR, 'WooCommerce tables missing on ' . home_url( '/' ) . "\n" );
			exit( 1 );
		}
		// A new store's first wp-admin request runs this on admin_init; since 8.2 it turns HPOS on when
		// every active plugin declared itself compatible (WooBrevo does), as on a real new store.
		if ( is_callable( array( 'WC_Install', 'newly_installed' ) ) ) {
			WC_Install::newly_installed();
		}
		// Tests switch order storage with woocommerce_custom_orders_table_enabled. WooCommerce creates the
		// HPOS tables on that switch if they are missing, and that DDL would commit the test's transaction:
		// create them now. Before 8.2, HPOS also sits behind a feature flag (off by default).
		$woobrevo_sync = wc_get_container()->get( \Automattic\WooCommerce\Internal\DataStores\Orders\DataSynchronizer::class );
		if ( ! $woobrevo_sync->check_orders_table_exists() ) {
			$woobrevo_sync->create_database_tables();
		}
		if ( version_compare( WC()->version, '8.2', '<' ) ) {
			update_option( 'woocommerce_feature_custom_order_tables_enabled', 'yes' );
		}
		if ( ! $woobrevo_sync->check_orders_table_exists() ) {
			fwrite( STDERR, 'WooCommerce HPOS tables missing on ' . home_url( '/' ) . "\n" );
			exit( 1 );
		}
		printf(
			"WooCommerce %s installed on %s (WordPress %s, PHP %s; orders in %s by default)\n",
			WC()->version,
			home_url( '/' ),
			$GLOBALS['wp_version'],
			PHP_VERSION,
			\Automattic\WooCommerce\Utilities\OrderUtil::custom_orders_table_usage_is_enabled() ? 'HPOS tables' : 'posts'
		);
		break;

	default:
		fwrite( STDERR, "unknown step $woobrevo_step\n" );
		exit( 2 );
}
// wp_die() exits with status 0 on the command line: run.sh looks for this line instead.
echo "WOOBREVO-STEP-OK\n";
