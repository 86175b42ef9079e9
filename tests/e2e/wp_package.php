<?php
/**
 * The plugin zip into a test WordPress the way wp-admin's Plugins → Add New → Upload Plugin does it,
 * one WordPress request per process (tests/e2e/test_package_e2e.py):
 *
 *   WOOBREVO_WP_DIR=… WOOBREVO_WP_LOADER=… php wp_package.php COMMAND [ARGS…]
 *
 * install ZIP        Plugin_Upgrader::install() of the zip (update.php?action=upload-plugin runs the same,
 *                    with a skin that prints HTML; this one collects the messages). The upgrader deletes
 *                    the zip once unpacked, as it deletes an upload: give it a copy.
 * activate PLUGIN    activate_plugin() (plugins.php?action=activate), then the plugin's tables and options.
 * admin              a wp-admin request as the administrator: the admin menu is built (wp-admin/menu.php),
 *                    and the plugin's settings page is found in it and rendered.
 * state              the plugin as WordPress lists it, whether it is active, its tables.
 *
 * Prints one JSON object.
 *
 * @package WooBrevo\Tests
 */

$woobrevo_command = $argv[1] ?? '';
if ( 'admin' === $woobrevo_command ) {
	define( 'WP_ADMIN', true );
}
require getenv( 'WOOBREVO_WP_LOADER' );
require_once ABSPATH . 'wp-admin/includes/admin.php';
require_once ABSPATH . 'wp-admin/includes/class-wp-upgrader.php';
wp_set_current_user( 1 );

/**
 * The plugin's tables that exist on this site.
 *
 * @return array<int, string>
 */
function woobrevo_package_tables(): array {
	global $wpdb;
	return array_values( $wpdb->get_col( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->esc_like( $wpdb->prefix . 'woobrevo_' ) . '%' ) ) );
}

/**
 * Prints the result and ends the request.
 *
 * @param array<string, mixed> $result What to print.
 * @return void
 */
function woobrevo_package_done( array $result ): void {
	echo wp_json_encode( $result, JSON_UNESCAPED_SLASHES ), "\n";
}

switch ( $woobrevo_command ) {
	case 'install':
		if ( ! current_user_can( 'upload_plugins' ) || ! current_user_can( 'install_plugins' ) ) {
			fwrite( STDERR, "the administrator may not upload plugins here\n" );
			exit( 1 );
		}
		$woobrevo_skin     = new Automatic_Upgrader_Skin();
		$woobrevo_upgrader = new Plugin_Upgrader( $woobrevo_skin );
		$woobrevo_result   = $woobrevo_upgrader->install( $argv[2] );
		woobrevo_package_done(
			array(
				'result'   => is_wp_error( $woobrevo_result ) ? $woobrevo_result->get_error_message() : $woobrevo_result,
				'plugin'   => $woobrevo_upgrader->plugin_info(),
				'messages' => array_values( array_map( 'wp_strip_all_tags', $woobrevo_skin->get_upgrade_messages() ) ),
				'method'   => get_filesystem_method(),
			)
		);
		break;

	case 'activate':
		$woobrevo_before = woobrevo_package_tables();
		$woobrevo_result = activate_plugin( $argv[2] );
		woobrevo_package_done(
			array(
				'result'         => is_wp_error( $woobrevo_result ) ? $woobrevo_result->get_error_message() : true,
				'tables_before'  => $woobrevo_before,
				'tables'         => woobrevo_package_tables(),
				'schema_version' => (int) get_option( 'woobrevo_schema_version', 0 ),
				'schema_current' => class_exists( 'WooBrevo_Schema' ) ? WooBrevo_Schema::VERSION : null,
			)
		);
		break;

	case 'admin':
		// As wp-admin/admin.php does before the page: the menu, then the page's hook.
		require ABSPATH . 'wp-admin/menu.php';
		$woobrevo_found = array();
		foreach ( $submenu as $woobrevo_parent => $woobrevo_items ) {
			foreach ( $woobrevo_items as $woobrevo_item ) {
				if ( 'woobrevo' === $woobrevo_item[2] ) {
					$woobrevo_found[] = array(
						'parent' => $woobrevo_parent,
						'title'  => $woobrevo_item[0],
						'hook'   => get_plugin_page_hook( 'woobrevo', $woobrevo_parent ),
					);
				}
			}
		}
		$woobrevo_html = '';
		if ( $woobrevo_found && $woobrevo_found[0]['hook'] ) {
			ob_start();
			do_action( $woobrevo_found[0]['hook'] );
			$woobrevo_html = (string) ob_get_clean();
		}
		woobrevo_package_done(
			array(
				'pages'   => $woobrevo_found,
				'version' => defined( 'WOOBREVO_VERSION' ) ? WOOBREVO_VERSION : null,
				'html'    => $woobrevo_html,
			)
		);
		break;

	case 'state':
		$woobrevo_plugins = get_plugins();
		woobrevo_package_done(
			array(
				'plugin' => $woobrevo_plugins['woobrevo/woobrevo.php'] ?? null,
				'active' => is_plugin_active( 'woobrevo/woobrevo.php' ),
				'tables' => woobrevo_package_tables(),
				'dir'    => WP_PLUGIN_DIR . '/woobrevo',
			)
		);
		break;

	default:
		fwrite( STDERR, "unknown command $woobrevo_command\n" );
		exit( 2 );
}
