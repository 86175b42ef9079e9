<?php
/**
 * WooCommerce test double: the two utility classes the plugin calls.
 *
 * @package WooBrevo\Tests
 */

namespace Automattic\WooCommerce\Utilities;

// phpcs:disable Generic.Files.OneObjectStructurePerFile

/** FeaturesUtil: records declarations so tests can see them. */
class FeaturesUtil {
	/** @var array<string, array<string, bool>> feature => plugin file => compatible */
	public static $declared = array();

	public static function declare_compatibility( string $feature_id, string $plugin_file, bool $positive_compatibility = true ): bool {
		if ( ! doing_action( 'before_woocommerce_init' ) ) {
			return false; // WooCommerce only accepts declarations made inside before_woocommerce_init.
		}
		self::$declared[ $feature_id ][ plugin_basename( $plugin_file ) ] = $positive_compatibility;
		return true;
	}
}

/** OrderUtil: HPOS follows the same option WooCommerce uses. */
class OrderUtil {
	public static function custom_orders_table_usage_is_enabled(): bool {
		return 'yes' === get_option( 'woocommerce_custom_orders_table_enabled', 'yes' );
	}
}
