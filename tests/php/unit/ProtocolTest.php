<?php
/**
 * WooBrevo_Protocol: the plugin's half of stream protocol v1 (docs/protocol.md), with the
 * vectors of the agent's agent/core/protocol.py and tests/agent/test_stream.py: what the plugin
 * builds is what the agent parses, and what the agent builds is what the plugin parses.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

defined( 'ABSPATH' ) || define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' ); // As tests/php/bootstrap.php does for pure classes.
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-protocol.php';

/**
 * @covers WooBrevo_Protocol
 */
final class ProtocolTest extends TestCase {

	/** The agent's welcome_message() for docs/protocol.md's example. */
	private const WELCOME = '{"type": "welcome", "site": "default", "protocol": 1, "max_batch": 100, "max_message_bytes": 8388608, "watch_meta": {"customer": ["loyalty_points"], "order": [], "product": [], "coupon": []}, "server_time": "2026-11-27T06:30:00Z", "carts": {"enabled": true, "link_lifetime": 604800, "figures": {"active": 3, "abandoned": 4, "recovered": 1, "expired": 2, "converted": 5, "emptied": 0, "recovered_revenue": 39.0, "recovery_rate": 0.25}}}';

	/** The agent's ack_message() for docs/protocol.md's example. */
	private const ACK = '{"type": "ack", "batch": "b-1732689000-3", "accepted": ["a1b2c3d4-1042"], "rejected": [{"id": "a1b2c3d4-1043", "code": "invalid_payload", "message": "events[1]: payload.id (7) does not match resource_id (8)"}]}';

	/** The agent's error_message() for a bad event id. */
	private const ERROR = '{"type": "error", "code": "bad_message", "message": "events[3].id: expected 1-128 characters of [A-Za-z0-9._:-]"}';

	/**
	 * Decodes JSON as the agent does (orjson: a JSON object, nothing else).
	 *
	 * @param string $json JSON.
	 * @return array<string, mixed>
	 */
	private static function decode( string $json ): array {
		$value = json_decode( $json, true, 512, JSON_THROW_ON_ERROR );
		self::assertIsArray( $value );
		return $value;
	}

	public function test_hello_is_what_the_agent_parses(): void {
		$hello = self::decode( WooBrevo_Protocol::hello( 'https://shop.example/', 1, '0.1.0', '6.1.9', '7.9.0' ) );
		$this->assertSame(
			array(
				'type'           => 'hello',
				'protocol'       => 1,
				'site_url'       => 'https://shop.example/',
				'blog_id'        => 1,
				'plugin_version' => '0.1.0',
				'wp_version'     => '6.1.9',
				'wc_version'     => '7.9.0',
			),
			$hello
		);
		// Slashes and non-ASCII characters as they are; invalid UTF-8 replaced (a text frame is UTF-8).
		$raw = WooBrevo_Protocol::hello( "https://bücher.example/w\xff/", 2, '0.1.0', '6.8.8', '10.0.2' );
		$this->assertStringContainsString( '"site_url":"https://bücher.example/w' . "\u{FFFD}" . '/"', $raw );
		$this->assertTrue( mb_check_encoding( $raw, 'UTF-8' ) );
	}

	public function test_events_message_carries_the_encoded_events(): void {
		$order   = WooBrevo_Protocol::event( 'a1b2c3d4-1042', 'order.updated', 'order', 19, '2026-11-27T06:29:58Z', array( 'id' => 19, 'status' => 'processing' ), array( 'status_from' => 'on-hold', 'status_to' => 'processing' ) );
		$gone    = WooBrevo_Protocol::event( 'a1b2c3d4-1043', 'product.deleted', 'variation', 8, '2026-11-27T06:29:59Z', WooBrevo_Protocol::deleted_payload( 8, 7 ) );
		$message = self::decode( WooBrevo_Protocol::events( 'b-1732689000-3', array( $order, $gone ) ) );
		$this->assertSame( 'events', $message['type'] );
		$this->assertSame( 'b-1732689000-3', $message['batch'] );
		$this->assertSame(
			array(
				'id'          => 'a1b2c3d4-1042',
				'topic'       => 'order.updated',
				'resource'    => 'order',
				'resource_id' => 19,
				'occurred_at' => '2026-11-27T06:29:58Z',
				'payload'     => array(
					'id'     => 19,
					'status' => 'processing',
				),
				'extra'       => array(
					'status_from' => 'on-hold',
					'status_to'   => 'processing',
				),
			),
			$message['events'][0]
		);
		$this->assertSame(
			array(
				'id'        => 8,
				'parent_id' => 7,
			),
			$message['events'][1]['payload']
		);
		$this->assertArrayNotHasKey( 'extra', $message['events'][1] );
		foreach ( $message['events'] as $event ) {
			$this->assertTrue( WooBrevo_Protocol::is_event_id( $event['id'] ) );
		}
	}

	public function test_an_empty_payload_is_a_json_object(): void {
		$this->assertStringContainsString( '"payload":{}', WooBrevo_Protocol::event( 'e-1', 'customer.updated', 'customer', 3, '2026-11-27T06:29:58Z', array() ) );
		$this->assertSame( array( 'id' => 5 ), WooBrevo_Protocol::deleted_payload( 5 ) );
	}

	public function test_event_ids(): void {
		$this->assertTrue( WooBrevo_Protocol::is_event_id( 'a1b2c3d4-1042' ) );
		$this->assertTrue( WooBrevo_Protocol::is_event_id( str_repeat( 'a', 128 ) ) );
		$this->assertTrue( WooBrevo_Protocol::is_event_id( 'A.b_c:d-9' ) );
		$this->assertFalse( WooBrevo_Protocol::is_event_id( '' ) );
		$this->assertFalse( WooBrevo_Protocol::is_event_id( str_repeat( 'a', 129 ) ) );
		$this->assertFalse( WooBrevo_Protocol::is_event_id( 'a b' ) );
		$this->assertFalse( WooBrevo_Protocol::is_event_id( "abc\n" ) );
	}

	public function test_welcome(): void {
		$this->assertSame(
			array(
				'type'              => 'welcome',
				'site'              => 'default',
				'max_batch'         => 100,
				'max_message_bytes' => 8388608,
				'watch_meta'        => array(
					'customer' => array( 'loyalty_points' ),
					'order'    => array(),
					'product'  => array(),
					'coupon'   => array(),
				),
				'server_time'       => '2026-11-27T06:30:00Z',
				'carts'             => array(
					'enabled'       => true,
					'link_lifetime' => 604800,
				),
				'cart_figures'      => array(
					'active'            => 3,
					'abandoned'         => 4,
					'recovered'         => 1,
					'expired'           => 2,
					'recovered_revenue' => 39.0,
					'recovery_rate'     => 0.25,
				),
				'consent'           => null,
			),
			WooBrevo_Protocol::parse( self::WELCOME )
		);
	}

	public function test_welcome_consent_mode_known_or_none(): void {
		$this->assertSame( array( 'mode' => 'required' ), WooBrevo_Protocol::parse( '{"type":"welcome","consent":{"mode":"required"}}' )['consent'] );
		$this->assertSame( array( 'mode' => 'implied' ), WooBrevo_Protocol::parse( '{"type":"welcome","consent":{"mode":"implied","extra":1}}' )['consent'] );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome"}' )['consent'], 'an older agent sends none' );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome","consent":{"mode":"opt-out"}}' )['consent'] );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome","consent":"required"}' )['consent'] );
	}

	public function test_welcome_cart_figures_whole_and_well_typed_or_none(): void {
		$figures = static function ( array $changes ): ?array {
			$value = array_merge(
				array(
					'active'            => 0,
					'abandoned'         => 2,
					'recovered'         => 1,
					'expired'           => 0,
					'recovered_revenue' => 12,
					'recovery_rate'     => 0.5,
				),
				$changes
			);
			return WooBrevo_Protocol::parse( (string) json_encode( array( 'type' => 'welcome', 'carts' => array( 'figures' => $value ) ) ) )['cart_figures'];
		};
		$this->assertSame( 12.0, $figures( array() )['recovered_revenue'], 'an integer amount is a number too' );
		$this->assertNull( $figures( array( 'recovery_rate' => null ) )['recovery_rate'], 'nothing abandoned yet' );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome"}' )['cart_figures'], 'an older agent sends none' );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome","carts":{"enabled":false,"link_lifetime":60}}' )['cart_figures'], 'carts off: none' );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome","carts":{"figures":[1,2]}}' )['cart_figures'] );
		$this->assertNull( WooBrevo_Protocol::parse( '{"type":"welcome","carts":"yes"}' )['cart_figures'] );
		$malformed = array(
			array( 'active' => '3' ),
			array( 'abandoned' => -1 ),
			array( 'recovered' => 1.5 ),
			array( 'expired' => null ),
			array( 'recovered_revenue' => '39.00' ),
			array( 'recovered_revenue' => -5 ),
			array( 'recovery_rate' => 'half' ),
			array( 'recovery_rate' => -0.1 ),
		);
		foreach ( $malformed as $changes ) {
			$this->assertNull( $figures( $changes ), 'malformed: ' . json_encode( $changes ) );
		}
		$missing = json_encode( array( 'type' => 'welcome', 'carts' => array( 'figures' => array( 'active' => 1, 'abandoned' => 0, 'recovered' => 0, 'expired' => 0, 'recovered_revenue' => 0 ) ) ) );
		$this->assertNull( WooBrevo_Protocol::parse( (string) $missing )['cart_figures'], 'no recovery_rate at all' );
	}

	public function test_welcome_limits_are_defaulted_and_bounded(): void {
		$bare = WooBrevo_Protocol::parse( '{"type":"welcome"}' );
		$this->assertSame( array( 100, 8388608, array() ), array( $bare['max_batch'], $bare['max_message_bytes'], $bare['watch_meta'] ) );
		$odd = WooBrevo_Protocol::parse( '{"type":"welcome","max_batch":0,"max_message_bytes":1024,"watch_meta":"x"}' );
		$this->assertSame( array( 1, 65536, array() ), array( $odd['max_batch'], $odd['max_message_bytes'], $odd['watch_meta'] ) );
		$garbage = WooBrevo_Protocol::parse( '{"type":"welcome","max_batch":[5],"max_message_bytes":"lots"}' );
		$this->assertSame( array( 100, 8388608 ), array( $garbage['max_batch'], $garbage['max_message_bytes'] ) );
	}

	public function test_ack_with_accepted_and_rejected(): void {
		$this->assertSame(
			array(
				'type'     => 'ack',
				'batch'    => 'b-1732689000-3',
				'accepted' => array( 'a1b2c3d4-1042' ),
				'rejected' => array(
					array(
						'id'      => 'a1b2c3d4-1043',
						'code'    => 'invalid_payload',
						'message' => 'events[1]: payload.id (7) does not match resource_id (8)',
					),
				),
			),
			WooBrevo_Protocol::parse( self::ACK )
		);
	}

	public function test_ack_entries_that_name_no_event_are_dropped(): void {
		$ack = WooBrevo_Protocol::parse( '{"type":"ack","accepted":["e-1",7,null],"rejected":[{"id":"e-2"},{"code":"invalid_event"},"e-3",{"id":"e-4","code":["x"],"message":5}]}' );
		$this->assertNull( $ack['batch'] );
		$this->assertSame( array( 'e-1' ), $ack['accepted'] );
		$this->assertSame(
			array(
				array(
					'id'      => 'e-2',
					'code'    => 'rejected',
					'message' => '',
				),
				array(
					'id'      => 'e-4',
					'code'    => 'rejected',
					'message' => '5',
				),
			),
			$ack['rejected']
		);
		$empty = WooBrevo_Protocol::parse( '{"type":"ack","batch":"b-1"}' );
		$this->assertSame( array( 'b-1', array(), array() ), array( $empty['batch'], $empty['accepted'], $empty['rejected'] ) );
	}

	public function test_error(): void {
		$this->assertSame(
			array(
				'type'    => 'error',
				'code'    => 'bad_message',
				'message' => 'events[3].id: expected 1-128 characters of [A-Za-z0-9._:-]',
			),
			WooBrevo_Protocol::parse( self::ERROR )
		);
		$this->assertSame(
			array(
				'type'    => 'error',
				'code'    => 'error',
				'message' => '',
			),
			WooBrevo_Protocol::parse( '{"type":"error"}' )
		);
		// token_revoked comes before close 1008 (docs/protocol.md, "Connection").
		$this->assertSame( 'token_revoked', WooBrevo_Protocol::parse( '{"type":"error","code":"token_revoked","message":"the site token was revoked"}' )['code'] );
	}

	public function test_other_types_are_returned_without_their_fields(): void {
		$this->assertSame( array( 'type' => 'status' ), WooBrevo_Protocol::parse( '{"type":"status","anything":1}' ) );
		$this->assertSame( array( 'type' => '' ), WooBrevo_Protocol::parse( '{"type":5}' ) );
	}

	/**
	 * Frames that are not protocol messages.
	 *
	 * @return array<string, array{0: string}>
	 */
	public function malformed(): array {
		return array(
			'not JSON'      => array( 'not json' ),
			'truncated'     => array( '{"type": "ack", "batch": "b-1"' ),
			'an array'      => array( '["welcome"]' ),
			'a string'      => array( '"welcome"' ),
			'a number'      => array( '1' ),
			'empty'         => array( '' ),
			'no type'       => array( '{"site": "default"}' ),
			'null type'     => array( '{"type": null}' ),
			'NaN is not JSON' => array( '{"type": "ack", "n": NaN}' ),
		);
	}

	/**
	 * @dataProvider malformed
	 *
	 * @param string $text Frame.
	 */
	public function test_malformed_messages_are_a_protocol_error( string $text ): void {
		try {
			WooBrevo_Protocol::parse( $text );
			$this->fail( 'parsed: ' . $text );
		} catch ( UnexpectedValueException $e ) {
			$this->assertSame( 1002, $e->getCode() );
			$this->assertSame( 'the agent sent something that is not a protocol message', $e->getMessage() );
		}
	}
}
