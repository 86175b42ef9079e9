<?php
/**
 * The outbox and carts tables: created and upgraded with dbDelta, checked against a stored schema version
 * on `init` (priority 5) as WooCommerce's WC_Install does, per site in a network.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Schema install, upgrade, multisite life cycle and removal.
 */
final class WooBrevo_Schema {

	/** Bump when the table definition changes; init runs dbDelta when the stored one is lower. */
	public const VERSION = 3;

	/** Option holding the installed schema version, per site. */
	public const VERSION_OPTION = WooBrevo_Options::SCHEMA_VERSION;

	/** Per-site options the plugin owns (removed on uninstall): the registry's list. */
	public const OPTIONS = WooBrevo_Options::ALL;

	/**
	 * The outbox table name for a site.
	 *
	 * @param int|null $blog_id Site id; null for the current site.
	 * @return string
	 */
	public static function table( ?int $blog_id = null ): string {
		global $wpdb;
		$prefix = null === $blog_id ? $wpdb->prefix : $wpdb->get_blog_prefix( $blog_id );
		return $prefix . 'woobrevo_outbox';
	}

	/**
	 * The carts table name for a site.
	 *
	 * @param int|null $blog_id Site id; null for the current site.
	 * @return string
	 */
	public static function carts_table( ?int $blog_id = null ): string {
		global $wpdb;
		$prefix = null === $blog_id ? $wpdb->prefix : $wpdb->get_blog_prefix( $blog_id );
		return $prefix . 'woobrevo_carts';
	}

	/**
	 * The carts table (schema 3): one row per captured cart, its random token, who it belongs to
	 * (session key: the user id, or WooCommerce's guest session id), the hash of its last
	 * snapshot and the snapshot itself (shipped as the payload of its cart.* events).
	 *
	 * @return string
	 */
	public static function carts_table_sql(): string {
		global $wpdb;
		$table   = self::carts_table();
		$collate = $wpdb->get_charset_collate();
		return "CREATE TABLE {$table} (
id bigint(20) unsigned NOT NULL auto_increment,
token char(32) NOT NULL,
session_key varchar(100) NOT NULL,
customer_id bigint(20) unsigned NOT NULL default 0,
email varchar(200) NOT NULL default '',
hash char(32) NOT NULL default '',
snapshot longtext NULL,
snapshot_gmt datetime NULL,
PRIMARY KEY  (id),
UNIQUE KEY token (token),
KEY session_key (session_key)
) {$collate};";
	}

	/**
	 * The CREATE TABLE statement in dbDelta's dialect (two spaces after PRIMARY KEY, KEY not INDEX).
	 *
	 * @return string
	 */
	public static function table_sql(): string {
		global $wpdb;
		$table   = self::table();
		$collate = $wpdb->get_charset_collate();
		return "CREATE TABLE {$table} (
id bigint(20) unsigned NOT NULL auto_increment,
resource varchar(20) NOT NULL,
resource_id bigint(20) unsigned NOT NULL,
topic varchar(40) NOT NULL,
extra text NULL,
occurred_at datetime NOT NULL,
touched int(10) unsigned NOT NULL default 0,
attempts int(10) unsigned NOT NULL default 0,
claimed_by varchar(64) NULL,
claimed_until datetime NULL,
PRIMARY KEY  (id),
KEY claimed_by (claimed_by),
KEY resource (resource,resource_id)
) {$collate};";
	}

	/**
	 * Runs on `init` (priority 5): installs or upgrades when the stored version is behind.
	 *
	 * @return void
	 */
	public static function maybe_upgrade(): void {
		if ( (int) get_option( self::VERSION_OPTION, 0 ) < self::VERSION ) {
			self::install();
		}
	}

	/**
	 * Whether the current site has the table (cheap: one autoloaded option).
	 *
	 * @return bool
	 */
	public static function is_installed(): bool {
		return (int) get_option( self::VERSION_OPTION, 0 ) > 0;
	}

	/**
	 * Creates or upgrades the current site's table and default options.
	 *
	 * @return void
	 */
	public static function install(): void {
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		dbDelta( self::table_sql() );
		dbDelta( self::carts_table_sql() );
		add_option( WooBrevo_Options::OUTBOX_EPOCH, bin2hex( random_bytes( 6 ) ) );
		add_option( WooBrevo_Options::CART_SECRET, bin2hex( random_bytes( 32 ) ), '', false );
		add_option( WooBrevo_Options::TLS_VERIFY, '1' );
		add_option( WooBrevo_Options::WATCH_META, array() );
		// Read on page views that load a cart: autoloaded, so they cost no query.
		add_option( WooBrevo_Options::GUEST_CARTS, '1' );
		add_option( WooBrevo_Options::CARTS_ENABLED, '1' );
		add_option( WooBrevo_Options::CART_LINK_LIFETIME, WooBrevo_Protocol::DEFAULT_CART_LINK_LIFETIME );
		// Secrets and bulky lists are not autoloaded.
		add_option( WooBrevo_Options::REJECTED, array(), '', false );
		update_option( self::VERSION_OPTION, self::VERSION );
	}

	/**
	 * Activation hook: on network activation, every existing site gets its table.
	 *
	 * @param bool $network_wide Whether the plugin is being network-activated.
	 * @return void
	 */
	public static function activate( $network_wide = false ): void {
		if ( is_multisite() && $network_wide ) {
			foreach ( get_sites(
				array(
					'fields' => 'ids',
					'number' => 0,
				)
			) as $blog_id ) {
				switch_to_blog( (int) $blog_id );
				self::install();
				restore_current_blog();
			}
			return;
		}
		self::install();
	}

	/**
	 * A site created after network activation gets its table (core creates its own tables at priority 10).
	 *
	 * @param WP_Site $site The new site.
	 * @return void
	 */
	public static function action_wp_initialize_site( $site ): void {
		if ( ! function_exists( 'is_plugin_active_for_network' ) ) {
			require_once ABSPATH . 'wp-admin/includes/plugin.php';
		}
		if ( ! is_plugin_active_for_network( plugin_basename( WOOBREVO_FILE ) ) ) {
			return;
		}
		switch_to_blog( (int) $site->blog_id );
		self::install();
		restore_current_blog();
	}

	/**
	 * The table goes with its site.
	 *
	 * @param string[] $tables  Tables WordPress is about to drop.
	 * @param int      $blog_id The site being deleted.
	 * @return string[]
	 */
	public static function filter_wpmu_drop_tables( $tables, $blog_id ): array {
		$tables   = (array) $tables;
		$tables[] = self::table( (int) $blog_id );
		$tables[] = self::carts_table( (int) $blog_id );
		return $tables;
	}

	/**
	 * Removes the current site's table, options and scheduled event (uninstall only).
	 *
	 * @return void
	 */
	public static function uninstall_site(): void {
		global $wpdb;
		$table = self::table();
		$wpdb->query( "DROP TABLE IF EXISTS `{$table}`" ); // phpcs:ignore -- the name is ours, not input.
		$carts = self::carts_table();
		$wpdb->query( "DROP TABLE IF EXISTS `{$carts}`" ); // phpcs:ignore -- the name is ours, not input.
		foreach ( WooBrevo_Options::ALL as $option ) {
			delete_option( $option );
		}
		foreach ( WooBrevo_Options::TRANSIENTS as $transient ) {
			delete_transient( $transient );
		}
		wp_clear_scheduled_hook( 'woobrevo_ship' );
	}
}
