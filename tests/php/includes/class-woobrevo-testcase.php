<?php
/**
 * Base test case for tests inside WordPress: each test runs in a transaction rolled back at the
 * end (as WordPress's own WP_UnitTestCase does), with caches and per-request state reset.
 *
 * @package WooBrevo\Tests
 */

use PHPUnit\Framework\TestCase;

/**
 * Base for integration and multisite tests.
 */
abstract class WooBrevo_TestCase extends TestCase {

	protected function setUp(): void {
		global $wpdb;
		parent::setUp();
		$wpdb->suppress_errors = false;
		$wpdb->show_errors     = true;
		wp_cache_flush();
		$wpdb->query( 'START TRANSACTION' );
		WooBrevo_Outbox::reset_request();
		wp_set_current_user( 0 );
	}

	protected function tearDown(): void {
		global $wpdb;
		while ( function_exists( 'ms_is_switched' ) && ms_is_switched() ) {
			restore_current_blog();
		}
		$wpdb->query( 'ROLLBACK' );
		wp_cache_flush();
		WooBrevo_Outbox::reset_request();
		wp_set_current_user( 0 );
		$_POST    = array();
		$_GET     = array();
		$_REQUEST = array();
		parent::tearDown();
	}

	/** Ends the simulated request: the next change writes a new row. */
	protected function new_request(): void {
		WooBrevo_Outbox::reset_request();
		wp_cache_flush();
	}

	/**
	 * Outbox rows of the current site, oldest first, with extra decoded.
	 *
	 * @return array<int, array<string, mixed>>
	 */
	protected function rows( ?string $resource = null ): array {
		global $wpdb;
		$table = ( new WooBrevo_Outbox() )->table();
		$rows  = $wpdb->get_results( "SELECT * FROM {$table} ORDER BY id", ARRAY_A ); // phpcs:ignore
		$out   = array();
		foreach ( $rows as $row ) {
			if ( null !== $resource && $row['resource'] !== $resource ) {
				continue;
			}
			$row['resource_id'] = (int) $row['resource_id'];
			$row['extra']       = $row['extra'] ? json_decode( $row['extra'], true ) : array();
			$out[]              = $row;
		}
		return $out;
	}

	/** [topic, id] pairs of the rows, for compact assertions. */
	protected function topics( ?string $resource = null ): array {
		return array_map( static fn( $r ) => array( $r['topic'], $r['resource_id'] ), $this->rows( $resource ) );
	}

	protected function clear_outbox(): void {
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . ( new WooBrevo_Outbox() )->table() ); // phpcs:ignore
		$this->new_request();
	}

	protected function admin_id(): int {
		$user = get_user_by( 'login', 'admin' );
		return (int) $user->ID;
	}

	/** A registered customer through WooCommerce's CRUD API (works with the double and real WooCommerce). */
	protected function make_customer( string $email = 'alice@example.com' ): WC_Customer {
		$customer = new WC_Customer();
		$customer->set_email( $email );
		$customer->set_first_name( 'Alice' );
		$customer->set_last_name( 'Martin' );
		$customer->set_billing_email( $email );
		$customer->set_billing_phone( '+33612345678' );
		$customer->set_billing_city( 'Paris' );
		$customer->set_billing_country( 'FR' );
		$customer->save();
		return $customer;
	}

	protected function make_product( string $name = 'Blue T-Shirt', string $price = '17.99' ): WC_Product_Simple {
		$product = new WC_Product_Simple();
		$product->set_name( $name );
		$product->set_sku( 'SKU-' . wp_generate_password( 6, false ) );
		$product->set_regular_price( $price );
		$product->save();
		return $product;
	}

	/** A die handler that throws, so wp_die() in admin handlers can be asserted. */
	public static function die_handler(): callable {
		return static function ( $message ) {
			throw new WPDieException( is_string( $message ) ? $message : 'wp_die' );
		};
	}
}

/** Thrown by the test wp_die handler. */
class WPDieException extends Exception {
}
