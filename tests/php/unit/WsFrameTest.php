<?php
/**
 * WooBrevo_Ws_Frame against the RFC 6455 examples (§1.3, §5.7) and its protocol rules.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

defined( 'ABSPATH' ) || define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' ); // As tests/php/bootstrap.php does for pure classes.
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-ws-frame.php';

final class WsFrameTest extends TestCase {

	private static function bytes( string $hex ): string {
		return (string) hex2bin( str_replace( ' ', '', $hex ) );
	}

	// RFC 6455 §1.3.
	public function test_accept_key_rfc_vector(): void {
		$this->assertSame( 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', WooBrevo_Ws_Frame::accept_key( 'dGhlIHNhbXBsZSBub25jZQ==' ) );
	}

	// RFC 6455 §5.7: a single-frame unmasked text message.
	public function test_unmasked_hello(): void {
		$bytes = self::bytes( '81 05 48 65 6c 6c 6f' );
		$this->assertSame( $bytes, WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, 'Hello' ) );
		$frame = WooBrevo_Ws_Frame::decode( $bytes );
		$this->assertSame(
			array(
				'fin'      => true,
				'opcode'   => 1,
				'payload'  => 'Hello',
				'masked'   => false,
				'consumed' => 7,
			),
			$frame
		);
	}

	// RFC 6455 §5.7: a single-frame masked text message.
	public function test_masked_hello(): void {
		$bytes = self::bytes( '81 85 37 fa 21 3d 7f 9f 4d 51 58' );
		$this->assertSame( $bytes, WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, 'Hello', true, self::bytes( '37fa213d' ) ) );
		$frame = WooBrevo_Ws_Frame::decode( $bytes, true );
		$this->assertSame( 'Hello', $frame['payload'] );
		$this->assertTrue( $frame['masked'] );
		$this->assertSame( 11, $frame['consumed'] );
		$this->assertSame( 'Hello', WooBrevo_Ws_Frame::decode( $bytes, null )['payload'] );
	}

	// RFC 6455 §5.7: a fragmented unmasked text message, "Hel" then "lo".
	public function test_fragmented_hello(): void {
		$first  = self::bytes( '01 03 48 65 6c' );
		$second = self::bytes( '80 02 6c 6f' );
		$this->assertSame( $first, WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, 'Hel', false ) );
		$this->assertSame( $second, WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_CONTINUATION, 'lo', true ) );

		$buffer = $first . $second;
		$one    = WooBrevo_Ws_Frame::decode( $buffer );
		$this->assertFalse( $one['fin'] );
		$this->assertSame( WooBrevo_Ws_Frame::OP_TEXT, $one['opcode'] );
		$this->assertSame( 'Hel', $one['payload'] );
		$two = WooBrevo_Ws_Frame::decode( substr( $buffer, $one['consumed'] ) );
		$this->assertTrue( $two['fin'] );
		$this->assertSame( WooBrevo_Ws_Frame::OP_CONTINUATION, $two['opcode'] );
		$this->assertSame( 'lo', $two['payload'] );
	}

	// RFC 6455 §5.7: unmasked ping and masked pong with body "Hello".
	public function test_ping_and_pong(): void {
		$ping = self::bytes( '89 05 48 65 6c 6c 6f' );
		$this->assertSame( $ping, WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_PING, 'Hello' ) );
		$this->assertSame( WooBrevo_Ws_Frame::OP_PING, WooBrevo_Ws_Frame::decode( $ping )['opcode'] );

		$pong = self::bytes( '8a 85 37 fa 21 3d 7f 9f 4d 51 58' );
		$this->assertSame( $pong, WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_PONG, 'Hello', true, self::bytes( '37fa213d' ) ) );
		$frame = WooBrevo_Ws_Frame::decode( $pong, true );
		$this->assertSame( WooBrevo_Ws_Frame::OP_PONG, $frame['opcode'] );
		$this->assertSame( 'Hello', $frame['payload'] );
	}

	// RFC 6455 §5.7: 256 bytes binary in a single unmasked frame: 82 7E 0100.
	public function test_256_bytes_use_16_bit_length(): void {
		$payload = random_bytes( 256 );
		$bytes   = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_BINARY, $payload );
		$this->assertSame( self::bytes( '82 7e 01 00' ), substr( $bytes, 0, 4 ) );
		$this->assertSame( 260, strlen( $bytes ) );
		$frame = WooBrevo_Ws_Frame::decode( $bytes );
		$this->assertSame( $payload, $frame['payload'] );
		$this->assertSame( 260, $frame['consumed'] );
	}

	// RFC 6455 §5.7: 64 KiB binary in a single unmasked frame: 82 7F 0000000000010000.
	public function test_64_kib_uses_64_bit_length(): void {
		$payload = random_bytes( 65536 );
		$bytes   = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_BINARY, $payload );
		$this->assertSame( self::bytes( '82 7f 00 00 00 00 00 01 00 00' ), substr( $bytes, 0, 10 ) );
		$this->assertSame( $payload, WooBrevo_Ws_Frame::decode( $bytes )['payload'] );
	}

	public function test_length_boundaries(): void {
		foreach ( array( 0 => 2, 125 => 2, 126 => 4, 65535 => 4, 65536 => 10 ) as $length => $header ) {
			$payload = str_repeat( 'x', $length );
			$bytes   = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, $payload );
			$this->assertSame( $header + $length, strlen( $bytes ), "length $length" );
			$masked = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, $payload, true, "\x01\x02\x03\x04" );
			$this->assertSame( $header + 4 + $length, strlen( $masked ), "masked length $length" );
			$this->assertSame( $payload, WooBrevo_Ws_Frame::decode( $masked, true )['payload'] );
		}
	}

	public function test_incomplete_buffers_return_null(): void {
		$bytes = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, str_repeat( 'a', 70000 ), true, 'abcd' );
		foreach ( array( 0, 1, 2, 5, 9, 10, 13, 14, 1000, strlen( $bytes ) - 1 ) as $cut ) {
			$this->assertNull( WooBrevo_Ws_Frame::decode( substr( $bytes, 0, $cut ), true ), "cut at $cut" );
		}
		// A complete frame followed by the start of another: only the first is consumed.
		$two   = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, 'a' ) . "\x81";
		$frame = WooBrevo_Ws_Frame::decode( $two );
		$this->assertSame( 3, $frame['consumed'] );
		$this->assertNull( WooBrevo_Ws_Frame::decode( substr( $two, 3 ) ) );
	}

	public function test_masking_is_an_involution(): void {
		$data = random_bytes( 1001 );
		$key  = random_bytes( 4 );
		$this->assertSame( $data, WooBrevo_Ws_Frame::apply_mask( WooBrevo_Ws_Frame::apply_mask( $data, $key ), $key ) );
		$this->assertSame( '', WooBrevo_Ws_Frame::apply_mask( '', $key ) );
	}

	public function test_close_payload_round_trip(): void {
		$payload = WooBrevo_Ws_Frame::close_payload( 1001, 'going away' );
		$this->assertSame( self::bytes( '03 e9' ) . 'going away', $payload );
		$this->assertSame(
			array(
				'code'   => 1001,
				'reason' => 'going away',
			),
			WooBrevo_Ws_Frame::parse_close( $payload )
		);
		$this->assertSame( 1005, WooBrevo_Ws_Frame::parse_close( '' )['code'] );
		$frame = WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_CLOSE, WooBrevo_Ws_Frame::close_payload( 1000 ) );
		$this->assertSame( self::bytes( '88 02 03 e8' ), $frame );
	}

	public function test_close_reason_is_cut_to_fit_at_a_character_boundary(): void {
		$payload = WooBrevo_Ws_Frame::close_payload( 1000, str_repeat( 'é', 100 ) );
		$this->assertLessThanOrEqual( 125, strlen( $payload ) );
		$this->assertSame( 124, strlen( $payload ) ); // 2 + 61 two-byte characters.
		$this->assertTrue( WooBrevo_Ws_Frame::is_utf8( substr( $payload, 2 ) ) );
	}

	public function test_close_codes_that_cannot_be_sent(): void {
		foreach ( array( 999, 1004, 1005, 1006, 1015, 2999, 5000 ) as $code ) {
			try {
				WooBrevo_Ws_Frame::close_payload( $code );
				$this->fail( "close code $code accepted" );
			} catch ( InvalidArgumentException $e ) {
				$this->assertStringContainsString( (string) $code, $e->getMessage() );
			}
			$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::parse_close( pack( 'n', $code ) ) );
		}
		$this->assertSame( 4000, WooBrevo_Ws_Frame::parse_close( pack( 'n', 4000 ) )['code'] );
	}

	public function test_bad_close_payloads(): void {
		$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::parse_close( "\x03" ) );
		$this->assertViolation( 1007, fn() => WooBrevo_Ws_Frame::parse_close( "\x03\xe8\xff\xfe" ) );
	}

	public function test_reserved_bits_are_a_protocol_error(): void {
		foreach ( array( 0xC1, 0xA1, 0x91 ) as $b0 ) {
			$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( chr( $b0 ) . "\x05Hello" ) );
		}
	}

	public function test_unknown_opcodes_are_a_protocol_error(): void {
		foreach ( array( 3, 7, 0xB, 0xF ) as $opcode ) {
			$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( chr( 0x80 | $opcode ) . "\x00" ) );
		}
	}

	public function test_masked_server_frame_is_an_error_for_a_client(): void {
		$masked = self::bytes( '81 85 37 fa 21 3d 7f 9f 4d 51 58' );
		$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( $masked, false ) );
		// The reverse on a server: an unmasked client frame.
		$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( self::bytes( '81 05 48 65 6c 6c 6f' ), true ) );
	}

	public function test_oversized_control_frame_is_an_error(): void {
		// A ping claiming 126 bytes (16-bit length form).
		$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( "\x89\x7e\x00\x7e" . str_repeat( 'a', 126 ) ) );
		$this->expectException( InvalidArgumentException::class );
		WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_PING, str_repeat( 'a', 126 ) );
	}

	public function test_fragmented_control_frame_is_an_error(): void {
		$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( "\x09\x00" ) );
		$this->expectException( InvalidArgumentException::class );
		WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_CLOSE, '', false );
	}

	public function test_64_bit_length_with_high_bit_is_an_error(): void {
		$this->assertViolation( 1002, fn() => WooBrevo_Ws_Frame::decode( "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01" ) );
	}

	public function test_payload_over_limit_fails_before_buffering(): void {
		// Only the header is present: the limit is enforced from the declared length.
		$this->assertViolation( 1009, fn() => WooBrevo_Ws_Frame::decode( "\x82\x7f\x00\x00\x00\x00\x00\x10\x00\x00", false, 1024 ) );
		$this->assertNotNull( WooBrevo_Ws_Frame::decode( WooBrevo_Ws_Frame::encode( 2, str_repeat( 'a', 1024 ) ), false, 1024 ) );
	}

	public function test_bad_mask_key_and_opcode_on_encode(): void {
		$this->expectException( InvalidArgumentException::class );
		WooBrevo_Ws_Frame::encode( WooBrevo_Ws_Frame::OP_TEXT, 'a', true, 'abc' );
	}

	public function test_unknown_opcode_on_encode(): void {
		$this->expectException( InvalidArgumentException::class );
		WooBrevo_Ws_Frame::encode( 3, 'a' );
	}

	/**
	 * Asserts that a call throws UnexpectedValueException with a close code.
	 *
	 * @param int      $code Expected close code.
	 * @param callable $fn   The call.
	 */
	private function assertViolation( int $code, callable $fn ): void {
		try {
			$fn();
		} catch ( UnexpectedValueException $e ) {
			$this->assertSame( $code, $e->getCode(), $e->getMessage() );
			return;
		}
		$this->fail( "no protocol error (expected close code $code)" );
	}
}
