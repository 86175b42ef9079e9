<?php
/**
 * uninstall.php on a single site: the outbox table and every option of WooBrevo_Options go.
 * (NetworkTest checks the same on every site of a network.)
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Schema
 * @covers WooBrevo_Options
 */
final class UninstallTest extends WooBrevo_TestCase {

	protected function setUp(): void {
		parent::setUp();
		global $wpdb;
		// The uninstall runs in another process and drops a table (DDL): nothing can be rolled back.
		$wpdb->query( 'COMMIT' );
	}

	/**
	 * The stored rows of the registered options and transients, by name.
	 *
	 * @return array<string, array<string, string>>
	 */
	private static function stored(): array {
		global $wpdb;
		$names = array_merge( WooBrevo_Options::ALL, WooBrevo_Options::TRANSIENTS, array_map( static fn( string $t ): string => '_transient_' . $t, WooBrevo_Options::TRANSIENTS ) );
		$rows  = $wpdb->get_results(
			$wpdb->prepare( "SELECT option_name, option_value, autoload FROM {$wpdb->options} WHERE option_name IN (" . implode( ',', array_fill( 0, count( $names ), '%s' ) ) . ')', $names ), // phpcs:ignore -- placeholders built here.
			ARRAY_A
		);
		return array_column( $rows, null, 'option_name' );
	}

	public function test_uninstall_removes_the_table_and_every_registered_option(): void {
		global $wpdb;
		$before    = self::stored();
		$scheduled = wp_next_scheduled( 'woobrevo_ship' );
		foreach ( WooBrevo_Options::ALL as $option ) {
			if ( ! isset( $before[ $option ] ) ) {
				update_option( $option, 'set by UninstallTest' );
			}
		}
		set_transient( WooBrevo_Options::DEPTH_TRANSIENT, 3, MINUTE_IN_SECONDS );
		$this->assertEqualsCanonicalizing( WooBrevo_Options::ALL, array_values( array_intersect( array_keys( self::stored() ), WooBrevo_Options::ALL ) ) );
		try {
			$cmd = sprintf(
				'WOOBREVO_WP_DIR=%s php -r %s 2>&1',
				escapeshellarg( (string) getenv( 'WOOBREVO_WP_DIR' ) ),
				escapeshellarg( 'require getenv("WOOBREVO_WP_LOADER") ?: "' . WOOBREVO_TESTS_DIR . '/wp-env/load.php"; define( "WP_UNINSTALL_PLUGIN", "woobrevo/woobrevo.php" ); include WP_PLUGIN_DIR . "/woobrevo/uninstall.php"; echo "UNINSTALLED";' )
			);
			exec( $cmd, $out, $rc );
			$this->assertSame( 0, $rc, implode( "\n", $out ) );
			$this->assertStringContainsString( 'UNINSTALLED', implode( "\n", $out ) );
			wp_cache_flush();
			$this->assertSame( array(), self::stored() );
			$this->assertSame( array(), $wpdb->get_col( $wpdb->prepare( 'SHOW TABLES LIKE %s', WooBrevo_Schema::table() ) ) );
			$this->assertSame( array(), $wpdb->get_col( $wpdb->prepare( 'SHOW TABLES LIKE %s', WooBrevo_Schema::carts_table() ) ) );
			$this->assertFalse( wp_next_scheduled( 'woobrevo_ship' ) );
		} finally {
			// Back to the state the other tests expect: the table, and the options as they were.
			foreach ( WooBrevo_Options::ALL as $option ) {
				delete_option( $option );
			}
			foreach ( $before as $row ) {
				$wpdb->replace( $wpdb->options, $row );
			}
			wp_cache_flush();
			WooBrevo_Schema::activate( false );
			if ( false !== $scheduled && ! wp_next_scheduled( 'woobrevo_ship' ) ) {
				wp_schedule_event( $scheduled, 'woobrevo_minute', 'woobrevo_ship' );
			}
		}
		$this->assertSame( array( WooBrevo_Schema::table() ), $wpdb->get_col( $wpdb->prepare( 'SHOW TABLES LIKE %s', WooBrevo_Schema::table() ) ) );
		$this->assertSame( array( WooBrevo_Schema::carts_table() ), $wpdb->get_col( $wpdb->prepare( 'SHOW TABLES LIKE %s', WooBrevo_Schema::carts_table() ) ) );
	}
}
