<?php
/**
 * Multisite: per-site tables and settings, network activation, sites created and deleted later,
 * the network screen, and uninstall on every site.
 *
 * @package WooBrevo\Tests
 */

/**
 * @covers WooBrevo_Schema
 * @covers WooBrevo_Network
 */
final class NetworkTest extends WooBrevo_TestCase {

	private function tables(): array {
		global $wpdb;
		return $wpdb->get_col( "SHOW TABLES LIKE '%woobrevo_outbox'" );
	}

	protected function setUp(): void {
		parent::setUp();
		global $wpdb;
		// Site changes are DDL (implicit commits): these tests clean up after themselves instead.
		$wpdb->query( 'COMMIT' );
	}

	public function test_network_is_set_up_with_two_sites(): void {
		$this->assertTrue( is_multisite() );
		$this->assertTrue( is_plugin_active_for_network( 'woobrevo/woobrevo.php' ) );
		$this->assertContains( 'wp_woobrevo_outbox', $this->tables() );
		$this->assertContains( 'wp_2_woobrevo_outbox', $this->tables() );
	}

	public function test_network_activation_creates_tables_for_every_site(): void {
		global $wpdb;
		foreach ( array( 1, 2 ) as $blog ) {
			$wpdb->query( 'DROP TABLE ' . WooBrevo_Schema::table( $blog ) ); // phpcs:ignore
			switch_to_blog( $blog );
			delete_option( WooBrevo_Schema::VERSION_OPTION );
			restore_current_blog();
		}
		$this->assertSame( array(), $this->tables() );
		WooBrevo_Schema::activate( true );
		$this->assertEqualsCanonicalizing( array( 'wp_woobrevo_outbox', 'wp_2_woobrevo_outbox' ), $this->tables() );
		switch_to_blog( 2 );
		$this->assertTrue( WooBrevo_Schema::is_installed() );
		restore_current_blog();
	}

	public function test_a_site_created_later_gets_its_table_and_loses_it_with_the_site(): void {
		$site_id = wp_insert_site( array( 'domain' => 'woobrevo.test', 'path' => '/later/', 'title' => 'Later', 'user_id' => 1 ) );
		$this->assertIsInt( $site_id );
		try {
			$this->assertContains( "wp_{$site_id}_woobrevo_outbox", $this->tables() );
			switch_to_blog( $site_id );
			$this->assertTrue( WooBrevo_Schema::is_installed() );
			$this->assertNotSame( '', ( new WooBrevo_Outbox() )->epoch() );
			restore_current_blog();
		} finally {
			wp_delete_site( $site_id );
		}
		$this->assertNotContains( "wp_{$site_id}_woobrevo_outbox", $this->tables() );
	}

	public function test_each_site_has_its_own_outbox_and_settings(): void {
		$outbox = new WooBrevo_Outbox();
		$before = array( $outbox->depth(), null );
		switch_to_blog( 2 );
		$before[1] = $outbox->depth();
		$product   = $this->make_product( 'Site 2 shirt' );
		WooBrevo_Settings::set( 'token', 'site-two-token-0000000000002' );
		$this->assertSame( $before[1] + 1, $outbox->depth() );
		$this->assertSame( 'wp_2_woobrevo_outbox', $outbox->table() );
		$rows = $this->rows();
		$this->assertSame( array( 'product.created', $product->get_id() ), array( end( $rows )['topic'], end( $rows )['resource_id'] ) );
		$epoch_2 = $outbox->epoch();
		restore_current_blog();
		$this->assertSame( $before[0], $outbox->depth(), 'site 1 outbox untouched' );
		$this->assertNotSame( $epoch_2, $outbox->epoch(), 'event ids differ per site' );
		$this->assertSame( '', WooBrevo_Settings::get( 'token' ) );

		$network = ( new WooBrevo_Network() )->sites();
		$by_id   = array_column( $network, null, 'blog_id' );
		$this->assertSame( 'set (…0002)', $by_id[2]['token'] );
		$this->assertSame( 'not set', $by_id[1]['token'] );
		$this->assertSame( $before[1] + 1, $by_id[2]['backlog'] );

		switch_to_blog( 2 );
		$product->delete( true );
		WooBrevo_Settings::set( 'token', '' );
		$this->clear_outbox();
		restore_current_blog();
	}

	public function test_uninstall_removes_every_sites_tables_and_options(): void {
		global $wpdb;
		$site_id = wp_insert_site( array( 'domain' => 'woobrevo.test', 'path' => '/gone/', 'title' => 'Gone', 'user_id' => 1 ) );
		$before  = array();
		foreach ( array( 1, 2, $site_id ) as $blog ) {
			switch_to_blog( $blog );
			$before[ $blog ] = $wpdb->get_results( "SELECT option_name, option_value, autoload FROM {$wpdb->options} WHERE option_name LIKE 'woobrevo\\_%'", ARRAY_A ); // phpcs:ignore -- no input.
			foreach ( WooBrevo_Options::ALL as $option ) {
				if ( false === get_option( $option ) ) {
					update_option( $option, 'set by NetworkTest' );
				}
			}
			set_transient( WooBrevo_Options::DEPTH_TRANSIENT, 3, MINUTE_IN_SECONDS );
			restore_current_blog();
		}
		try {
			$cmd = sprintf(
				'WOOBREVO_WP_DIR=%s php -r %s 2>&1',
				escapeshellarg( getenv( 'WOOBREVO_WP_DIR' ) ),
				escapeshellarg( 'require getenv("WOOBREVO_WP_LOADER") ?: "' . WOOBREVO_TESTS_DIR . '/wp-env/load.php"; define( "WP_UNINSTALL_PLUGIN", "woobrevo/woobrevo.php" ); include WP_PLUGIN_DIR . "/woobrevo/uninstall.php"; echo "UNINSTALLED";' )
			);
			exec( $cmd, $out, $rc );
			$this->assertSame( 0, $rc, implode( "\n", $out ) );
			$this->assertStringContainsString( 'UNINSTALLED', implode( "\n", $out ) );
			wp_cache_flush();
			$this->assertSame( array(), $this->tables() );
			foreach ( array( 1, 2, $site_id ) as $blog ) {
				switch_to_blog( $blog );
				$this->assertFalse( get_option( WooBrevo_Schema::VERSION_OPTION ), "site $blog" );
				foreach ( WooBrevo_Options::ALL as $option ) {
					$this->assertFalse( get_option( $option ), "site $blog: $option" );
				}
				foreach ( WooBrevo_Options::TRANSIENTS as $transient ) {
					$this->assertFalse( get_transient( $transient ), "site $blog: transient $transient" );
				}
				restore_current_blog();
			}
		} finally {
			wp_delete_site( $site_id );
			foreach ( array( 1, 2 ) as $blog ) { // The options as they were, for the other tests.
				switch_to_blog( $blog );
				foreach ( WooBrevo_Options::ALL as $option ) {
					delete_option( $option );
				}
				foreach ( $before[ $blog ] as $row ) {
					$wpdb->replace( $wpdb->options, $row );
				}
				restore_current_blog();
			}
			wp_cache_flush();
			WooBrevo_Schema::activate( true ); // Back to the installed state for the other tests.
		}
		$this->assertEqualsCanonicalizing( array( 'wp_woobrevo_outbox', 'wp_2_woobrevo_outbox' ), $this->tables() );
	}
}
