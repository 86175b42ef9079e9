<?php
/**
 * Uninstall: removes the outbox table, the options of WooBrevo_Options::ALL and the cron event
 * of every site. Runs only when WordPress uninstalls the plugin (never on deactivation).
 *
 * @package WooBrevo
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

require_once __DIR__ . '/includes/class-woobrevo-options.php';
require_once __DIR__ . '/includes/class-woobrevo-schema.php';

if ( is_multisite() ) {
	foreach ( get_sites(
		array(
			'fields' => 'ids',
			'number' => 0,
		)
	) as $woobrevo_blog_id ) {
		switch_to_blog( (int) $woobrevo_blog_id );
		WooBrevo_Schema::uninstall_site();
		restore_current_blog();
	}
} else {
	WooBrevo_Schema::uninstall_site();
}
