<?php
/**
 * Issue 16, finding 3 (the plugin's part): a poison event never blocks a store's outbox.
 *
 * The attack: an order carries a meta value nested hundreds of levels deep (or a NAN, or text
 * that is not UTF-8, from a plugin that adds it to the REST body). Before, json_encode() gave
 * up on it (an empty event, so a batch that is not JSON) or the agent could not store it (the
 * batch closed with 1011): the same oldest rows were resent on every tick, and nothing behind
 * them ever shipped. Now the shipper replaces what the agent could not store
 * (WooBrevo_Protocol::contained(): nested deeper than 64 levels, NAN/INF) and says so in the
 * status panel, invalid UTF-8 becomes U+FFFD, a row the agent rejects is removed with its
 * reason, and rows that cannot go now never hold up the rows behind them.
 *
 * Against the agent's real websocket server (`python -m agent.cli run`), inside real WordPress
 * on MariaDB. Every test ends with the audit: each event made is in the agent's inbox once.
 *
 * @package WooBrevo\Tests
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

require_once dirname( __DIR__ ) . '/unit/WsTestSupport.php';

/**
 * @covers WooBrevo_Shipper
 * @covers WooBrevo_Protocol
 * @covers WooBrevo_Outbox
 */
final class HostileInputTest extends TestCase {

	private const TOKEN = 'hostile-input-token_0123456789abcdefghijklmnopqrstuvwxyzAB';

	/** The agent's message limit: the smallest the plugin believes (WooBrevo_Protocol::MIN_MESSAGE_BYTES). */
	private const MAX_MESSAGE_BYTES = 65536;

	/** @var array<string, mixed> */
	private static array $agent;

	private static string $dir;

	/** @var int[] Orders made by a test, deleted after it. */
	private array $made = array();

	/** @var int[] Customers made by a test, deleted after it. */
	private array $made_users = array();

	public static function setUpBeforeClass(): void {
		self::$dir   = WsTestSupport::temp_dir();
		self::$agent = WsTestSupport::start_agent(
			self::$dir,
			// Two events a batch: a few rows are several batches, and two bad rows fill a claim.
			array(
				'stream' => array(
					'max_batch'         => 2,
					'max_message_bytes' => self::MAX_MESSAGE_BYTES,
				),
			),
			array(
				array(
					'id'    => 'default',
					'token' => self::TOKEN,
				),
			)
		);
	}

	public static function tearDownAfterClass(): void {
		foreach ( array( 'woobrevo_agent_url', 'woobrevo_token', 'woobrevo_rejected', 'woobrevo_trimmed', 'woobrevo_last_error' ) as $option ) {
			delete_option( $option );
		}
		WsTestSupport::stop_agent( self::$agent );
		WsTestSupport::remove_dir( self::$dir . '/state' );
		WsTestSupport::remove_dir( self::$dir );
	}

	protected function setUp(): void {
		global $wpdb;
		if ( ! WooBrevo_Schema::is_installed() ) {
			WooBrevo_Schema::install();
		}
		$wpdb->query( 'DELETE FROM ' . WooBrevo_Schema::table() ); // phpcs:ignore -- test cleanup, no input.
		foreach ( array( WooBrevo_Shipper::BACKOFF_STEP_OPTION, WooBrevo_Shipper::BACKOFF_UNTIL_OPTION, 'woobrevo_rejected', 'woobrevo_trimmed', 'woobrevo_last_error', 'woobrevo_connected', 'woobrevo_last_ack', 'woobrevo_payload_user' ) as $option ) {
			delete_option( $option );
		}
		WooBrevo_Settings::set( 'agent_url', sprintf( 'ws://127.0.0.1:%d/v1/stream', self::$agent['port'] ) );
		WooBrevo_Settings::set( 'token', self::TOKEN );
		WooBrevo_Settings::take_changed_sites();
		WooBrevo_Outbox::reset_request();
	}

	protected function tearDown(): void {
		require_once ABSPATH . 'wp-admin/includes/user.php';
		foreach ( $this->made as $id ) {
			// Through WooCommerce: with HPOS the post is only a placeholder, and deleting it alone
			// leaves the order's row in wc_orders (real WooCommerce then counts orders out of sync).
			$order = wc_get_order( $id );
			if ( $order ) {
				$order->delete( true );
			}
		}
		foreach ( $this->made_users as $id ) {
			wp_delete_user( $id );
		}
		WooBrevo_Settings::take_changed_sites();
		WooBrevo_Outbox::reset_request();
		wp_set_current_user( 0 );
	}

	private function shipper(): WooBrevo_Shipper {
		return new WooBrevo_Shipper( new WooBrevo_Outbox(), new WooBrevo_Payloads() );
	}

	/** Deleted-customer rows (no WooCommerce object needed), each from its own request. */
	private function add_rows( int $count, int $first ): void {
		for ( $i = 0; $i < $count; $i++ ) {
			( new WooBrevo_Outbox() )->add( 'customer', $first + $i, 'deleted' );
			WooBrevo_Outbox::reset_request();
		}
	}

	/** An order saved with these meta values, through WooCommerce's CRUD (the capture hooks write its row). */
	private function order_with_meta( array $meta ): int {
		$order = wc_create_order();
		foreach ( $meta as $key => $value ) {
			$order->update_meta_data( $key, $value );
		}
		$order->save();
		$this->made[] = $order->get_id();
		WooBrevo_Outbox::reset_request();
		wp_cache_flush();
		return $order->get_id();
	}

	/** A value nested $levels deep: array('a' => array('a' => … 'leaf')), built without recursion. */
	private static function nested( int $levels ): array {
		$value = 'leaf';
		for ( $i = 0; $i < $levels; $i++ ) {
			$value = array( 'a' => $value );
		}
		return $value;
	}

	/** How deep arrays nest in a decoded value (1 for a flat array), iteratively. */
	private static function depth( $value ): int {
		$deepest = 0;
		$stack   = array( array( $value, 1 ) );
		while ( $stack ) {
			list( $item, $level ) = array_pop( $stack );
			if ( is_array( $item ) ) {
				$deepest = max( $deepest, $level );
				foreach ( $item as $child ) {
					$stack[] = array( $child, $level + 1 );
				}
			}
		}
		return $deepest;
	}

	/** The outbox's rows as the event ids they ship under, oldest first. */
	private function event_ids(): array {
		global $wpdb;
		$epoch = ( new WooBrevo_Outbox() )->epoch();
		return array_map(
			static fn( $id ): string => $epoch . '-' . $id,
			$wpdb->get_col( 'SELECT id FROM ' . WooBrevo_Schema::table() . ' ORDER BY id' ) // phpcs:ignore -- no input.
		);
	}

	/** The agent's inbox entries of these event ids, by id; each id stored once (the audit). */
	private function stored( array $ids ): array {
		$inbox = WsTestSupport::agent_inbox( self::$agent );
		$seen  = array_count_values( array_column( $inbox, 'event_id' ) );
		$out   = array();
		foreach ( $inbox as $entry ) {
			if ( in_array( $entry['event_id'], $ids, true ) ) {
				$this->assertSame( 1, $seen[ $entry['event_id'] ], $entry['event_id'] . ' stored once' );
				$out[ $entry['event_id'] ] = $entry;
			}
		}
		return $out;
	}

	/** The value of a meta key in a stored order payload. */
	private static function meta( array $payload, string $key ) {
		foreach ( $payload['meta_data'] as $meta ) {
			if ( $meta['key'] === $key ) {
				return $meta['value'];
			}
		}
		throw new RuntimeException( "no meta $key in the payload" );
	}

	/** The ids of orders' rows among event ids, by order id. */
	private function ids_of_orders( array $orders ): array {
		global $wpdb;
		$epoch = ( new WooBrevo_Outbox() )->epoch();
		$out   = array();
		foreach ( $orders as $order ) {
			$row           = (int) $wpdb->get_var( $wpdb->prepare( 'SELECT id FROM ' . WooBrevo_Schema::table() . " WHERE resource = 'order' AND resource_id = %d", $order ) ); // phpcs:ignore -- table name only.
			$out[ $order ] = $epoch . '-' . $row;
		}
		return $out;
	}

	public function test_finding_3_deep_nan_and_invalid_utf8_orders_ship_and_the_rows_behind_them_too(): void {
		$this->add_rows( 3, 5100 );
		$deep     = $this->order_with_meta( array( 'deep' => self::nested( 300 ) ) );
		$deeper   = $this->order_with_meta( array( 'deeper' => self::nested( 1000 ) ) );
		$nan      = $this->order_with_meta( array( 'ratios' => array( 'nan' => NAN, 'inf' => INF, 'ok' => 1.5 ) ) );
		$latin1   = $this->order_with_meta( array( 'plain' => 'fine' ) );
		$this->add_rows( 3, 5200 );
		$ids      = $this->event_ids();
		$by_order = $this->ids_of_orders( array( $deep, $deeper, $nan, $latin1 ) );
		$this->assertCount( 10, $ids );

		// A plugin adds text read from a latin-1 table to the REST body: bytes that are not UTF-8.
		$patch       = static fn( $item ) => is_array( $item ) && (int) ( $item['id'] ?? 0 ) === $latin1
			? array_replace_recursive( $item, array( 'billing' => array( 'company' => "Caf\xE9 M\xFCller" ) ) )
			: $item;
		$latin1_text = static function ( $response, $handler, $request ) use ( $patch ) {
			if ( $response instanceof WP_REST_Response && str_starts_with( $request->get_route(), '/wc/v3/orders' ) ) {
				$data = $response->get_data();
				$response->set_data( isset( $data['id'] ) ? $patch( $data ) : array_map( $patch, (array) $data ) );
			}
			return $response;
		};
		add_filter( 'rest_request_after_callbacks', $latin1_text, 10, 3 );
		try {
			$stats = $this->shipper()->tick();
		} finally {
			remove_filter( 'rest_request_after_callbacks', $latin1_text, 10 );
		}

		$this->assertNull( $stats['error'] );
		$this->assertSame( array( 10, 10, 0 ), array( $stats['sent'], $stats['acked'], $stats['rejected'] ), 'every row shipped and acked' );
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth() );
		$stored = $this->stored( $ids );
		$this->assertSame( $ids, array_keys( $stored ), 'all ten in the agent, in order, once each' );

		// What the agent could not have stored is replaced, the rest of the order is there.
		foreach ( array( $deep => 'deep', $deeper => 'deeper' ) as $order => $key ) {
			$payload = $stored[ $by_order[ $order ] ]['payload'];
			$this->assertSame( $order, $payload['id'] );
			$this->assertLessThanOrEqual( WooBrevo_Protocol::MAX_DEPTH, self::depth( $payload ) );
			$this->assertStringContainsString( WooBrevo_Protocol::TOO_DEEP, (string) wp_json_encode( self::meta( $payload, $key ) ) );
		}
		$this->assertSame( array( 'nan' => null, 'inf' => null, 'ok' => 1.5 ), self::meta( $stored[ $by_order[ $nan ] ]['payload'], 'ratios' ) );
		$this->assertSame( "Caf\u{FFFD} M\u{FFFD}ller", $stored[ $by_order[ $latin1 ] ]['payload']['billing']['company'], 'invalid UTF-8 replaced by U+FFFD' );

		// The status panel says which events were sent with what replaced.
		$trimmed = ( new WooBrevo_Outbox() )->trimmed();
		$this->assertSame( array( $by_order[ $nan ], $by_order[ $deeper ], $by_order[ $deep ] ), array_column( $trimmed, 'event_id' ) );
		$this->assertMatchesRegularExpression( '/^payload\.meta_data\.\d+\.value\.…\.a: nested deeper than 64 levels, replaced by a marker$/', $trimmed[2]['message'] );
		$this->assertMatchesRegularExpression( '/^payload\.meta_data\.\d+\.value\.nan: not a finite number \(NAN\), sent as null; /', $trimmed[0]['message'] );
		$this->assertStringContainsString( 'value.inf: not a finite number (INF)', $trimmed[0]['message'] );
		$this->assertSame( array(), ( new WooBrevo_Outbox() )->rejected() );
		wp_set_current_user( (int) get_user_by( 'login', 'admin' )->ID );
		require_once ABSPATH . 'wp-admin/includes/template.php';
		ob_start();
		( new WooBrevo_Settings() )->render();
		$html = (string) ob_get_clean();
		$this->assertStringContainsString( 'Events sent with values replaced', $html );
		$this->assertStringContainsString( esc_html( $by_order[ $deep ] ), $html );

		// Nothing is resent: the next tick has nothing to send, and the agent holds each event once.
		$again = $this->shipper()->tick();
		$this->assertSame( array( null, 0 ), array( $again['error'], $again['sent'] ) );
		$this->assertCount( 10, $this->stored( $ids ) );
	}

	public function test_finding_3_a_run_of_rows_that_cannot_go_now_does_not_hold_up_the_rows_behind(): void {
		// Two customers whose events are over the agent's 64 KiB message limit, first in the
		// outbox: they fill the first claim (max_batch 2). Then three rows that can go.
		foreach ( array( 'big1', 'big2' ) as $name ) {
			$customer = new WC_Customer();
			$customer->set_email( $name . '.' . wp_generate_password( 6, false ) . '@example.com' );
			$customer->update_meta_data( 'notes', str_repeat( 'n', self::MAX_MESSAGE_BYTES ) );
			$customer->save();
			$this->made_users[] = $customer->get_id();
			WooBrevo_Outbox::reset_request();
		}
		$big = $this->event_ids();
		$this->assertCount( 2, $big );
		$this->add_rows( 3, 5300 );
		$good = array_values( array_diff( $this->event_ids(), $big ) );

		$stats = $this->shipper()->tick();

		$this->assertNull( $stats['error'] );
		$this->assertSame( array( 3, 3 ), array( $stats['sent'], $stats['acked'] ), 'the rows behind shipped' );
		$this->assertSame( $good, array_keys( $this->stored( $good ) ) );
		$this->assertSame( $big, $this->event_ids(), 'the big ones wait in the outbox, never dropped' );
		$this->assertStringContainsString( "over the agent's", (string) WooBrevo_Settings::get( 'last_error' ), 'and the admin is told' );
		$this->assertSame( array(), $this->stored( $big ) );
	}

	public function test_finding_3_a_row_the_agent_rejects_is_removed_with_its_reason_and_not_resent(): void {
		global $wpdb;
		$this->add_rows( 1, 5400 );
		// A row the agent refuses per event: a resource it does not know (capture never writes one).
		$wpdb->insert(
			WooBrevo_Schema::table(),
			array(
				'resource'    => 'subscription',
				'resource_id' => 9,
				'topic'       => 'subscription.deleted',
				'occurred_at' => gmdate( 'Y-m-d H:i:s' ),
			)
		);
		$refused = $this->event_ids()[1];
		$this->add_rows( 2, 5410 );
		$good = array_values( array_diff( $this->event_ids(), array( $refused ) ) );

		$stats = $this->shipper()->tick();

		$this->assertNull( $stats['error'] );
		$this->assertSame( array( 4, 3, 1 ), array( $stats['sent'], $stats['acked'], $stats['rejected'] ) );
		$this->assertSame( 0, ( new WooBrevo_Outbox() )->depth(), 'the rejected row is gone from the outbox' );
		$rejected = ( new WooBrevo_Outbox() )->rejected();
		$this->assertSame( $refused, $rejected[0]['event_id'] );
		$this->assertNotSame( '', $rejected[0]['code'] );
		$this->assertNotSame( '', $rejected[0]['message'], 'with the reason the agent gave' );
		$this->assertSame( $good, array_keys( $this->stored( $good ) ) );
		$this->assertSame( 0, $this->shipper()->tick()['sent'], 'and it is not sent again' );
	}

	public function test_finding_3_containment_is_bounded_whatever_the_depth(): void {
		// 100,000 levels: json_encode() alone would walk them all and crash PHP (checked by hand:
		// a segfault from 30,000 levels on PHP 8.2); fits() and contained() stop at 64.
		$value = self::nested( 100000 );
		$this->assertFalse( WooBrevo_Protocol::fits( $value, WooBrevo_Protocol::MAX_DEPTH ) );
		$this->assertNull( WooBrevo_Protocol::event_if_encodable( 'e-1', 'order.updated', 'order', 1, '2026-01-01T00:00:00Z', array( 'id' => 1, 'v' => $value ) ) );
		list( $kept, $problems ) = WooBrevo_Protocol::contained( array( 'id' => 1, 'v' => $value ) );
		$this->assertCount( 1, $problems );
		$this->assertSame( WooBrevo_Protocol::MAX_DEPTH, self::depth( $kept ) );
		$json = WooBrevo_Protocol::event_if_encodable( 'e-1', 'order.updated', 'order', 1, '2026-01-01T00:00:00Z', $kept );
		$this->assertIsString( $json );
		$this->assertSame( WooBrevo_Protocol::MAX_DEPTH + 1, self::depth( json_decode( $json, true ) ) );
		unset( $value );

		// Exactly 64 levels is sent as it is; objects stay objects, JsonSerializable is read as JSON reads it.
		$this->assertTrue( WooBrevo_Protocol::fits( self::nested( 64 ), WooBrevo_Protocol::MAX_DEPTH ) );
		$this->assertFalse( WooBrevo_Protocol::fits( self::nested( 65 ), WooBrevo_Protocol::MAX_DEPTH ) );
		$this->assertIsString( WooBrevo_Protocol::event_if_encodable( 'e-2', 'order.updated', 'order', 2, '2026-01-01T00:00:00Z', self::nested( 64 ) ) );
		$this->assertNull( WooBrevo_Protocol::event_if_encodable( 'e-2', 'order.updated', 'order', 2, '2026-01-01T00:00:00Z', self::nested( 65 ) ) );
		$meta = new WC_Meta_Data( array( 'id' => 3, 'key' => 'k', 'value' => array( NAN ) ) );
		list( $kept, $problems ) = WooBrevo_Protocol::contained( array( 'empty' => new stdClass(), 'meta' => array( $meta ) ) );
		$this->assertSame( '{"empty":{},"meta":[{"id":3,"key":"k","value":[null]}]}', wp_json_encode( $kept ) );
		$this->assertSame( array( 'payload.meta.0.value.0: not a finite number (NAN), sent as null' ), $problems );
	}
}
