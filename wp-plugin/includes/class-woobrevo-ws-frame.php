<?php
/**
 * RFC 6455 frame codec: bytes in, frames out, and back. No sockets, no clock, no WordPress.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Pure websocket frame codec (RFC 6455 §5).
 *
 * Protocol violations throw UnexpectedValueException whose code is the close code the
 * receiver must send (RFC 6455 §7.4.1): 1002 protocol error, 1007 invalid UTF-8, 1009 too big.
 * Misuse by the caller (a control frame over 125 bytes, a bad mask key) throws
 * InvalidArgumentException.
 */
final class WooBrevo_Ws_Frame {

	public const OP_CONTINUATION = 0x0;
	public const OP_TEXT         = 0x1;
	public const OP_BINARY       = 0x2;
	public const OP_CLOSE        = 0x8;
	public const OP_PING         = 0x9;
	public const OP_PONG         = 0xA;

	public const CLOSE_NORMAL          = 1000;
	public const CLOSE_GOING_AWAY      = 1001;
	public const CLOSE_PROTOCOL_ERROR  = 1002;
	public const CLOSE_UNSUPPORTED     = 1003;
	public const CLOSE_NO_STATUS       = 1005;
	public const CLOSE_ABNORMAL        = 1006;
	public const CLOSE_INVALID_DATA    = 1007;
	public const CLOSE_POLICY          = 1008;
	public const CLOSE_TOO_BIG         = 1009;
	public const CLOSE_INTERNAL_ERROR  = 1011;

	/** RFC 6455 §1.3: the GUID appended to the key before hashing. */
	public const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

	/** RFC 6455 §5.5: control frames carry at most 125 bytes. */
	public const MAX_CONTROL_PAYLOAD = 125;

	/**
	 * Encodes one frame.
	 *
	 * @param int         $opcode   One of the OP_* constants.
	 * @param string      $payload  Application data (already split by the caller when fragmenting).
	 * @param bool        $fin      False for every fragment but the last (RFC 6455 §5.4).
	 * @param string|null $mask_key 4 bytes for a client frame (§5.3), null for an unmasked frame.
	 * @return string The frame's bytes.
	 * @throws InvalidArgumentException On a bad opcode, mask key or control frame.
	 */
	public static function encode( int $opcode, string $payload, bool $fin = true, ?string $mask_key = null ): string {
		if ( ! self::is_known_opcode( $opcode ) ) {
			throw new InvalidArgumentException( sprintf( 'unknown websocket opcode %d', $opcode ) );
		}
		$length = strlen( $payload );
		if ( self::is_control( $opcode ) ) {
			// RFC 6455 §5.5: control frames are never fragmented and carry at most 125 bytes.
			if ( ! $fin ) {
				throw new InvalidArgumentException( 'a control frame cannot be fragmented' );
			}
			if ( $length > self::MAX_CONTROL_PAYLOAD ) {
				throw new InvalidArgumentException( sprintf( 'a control frame carries at most 125 bytes, not %d', $length ) );
			}
		}
		if ( null !== $mask_key && 4 !== strlen( $mask_key ) ) {
			throw new InvalidArgumentException( 'a websocket mask key is 4 bytes' );
		}

		$head     = chr( ( $fin ? 0x80 : 0x00 ) | $opcode );
		$mask_bit = null === $mask_key ? 0x00 : 0x80;
		// RFC 6455 §5.2: 7-bit length up to 125, then 126 + 16 bits, then 127 + 64 bits.
		if ( $length <= 125 ) {
			$head .= chr( $mask_bit | $length );
		} elseif ( $length <= 0xFFFF ) {
			$head .= chr( $mask_bit | 126 ) . pack( 'n', $length );
		} else {
			$head .= chr( $mask_bit | 127 ) . pack( 'J', $length );
		}
		if ( null === $mask_key ) {
			return $head . $payload;
		}
		return $head . $mask_key . self::apply_mask( $payload, $mask_key );
	}

	/**
	 * Decodes the first frame in a buffer.
	 *
	 * @param string    $buffer        Bytes read so far.
	 * @param bool|null $expect_masked False on a client (a masked server frame is an error,
	 *                                 RFC 6455 §5.1), true on a server, null to accept both.
	 * @param int       $max_payload   Largest payload accepted; bigger frames fail with 1009
	 *                                 before their bytes are buffered.
	 * @return array{fin: bool, opcode: int, payload: string, masked: bool, consumed: int}|null
	 *         The frame and the number of bytes it used, or null when the buffer holds only part of it.
	 * @throws UnexpectedValueException On a protocol violation (code = close code to send).
	 */
	public static function decode( string $buffer, ?bool $expect_masked = false, int $max_payload = PHP_INT_MAX ): ?array {
		$available = strlen( $buffer );
		if ( $available < 2 ) {
			return null;
		}
		$b0     = ord( $buffer[0] );
		$b1     = ord( $buffer[1] );
		$fin    = 0 !== ( $b0 & 0x80 );
		$opcode = $b0 & 0x0F;
		$masked = 0 !== ( $b1 & 0x80 );
		$length = $b1 & 0x7F;

		// RFC 6455 §5.2: RSV1-3 must be 0 unless an extension was negotiated (none is).
		if ( 0 !== ( $b0 & 0x70 ) ) {
			throw self::violation( 'reserved bits set without a negotiated extension' );
		}
		if ( ! self::is_known_opcode( $opcode ) ) {
			throw self::violation( sprintf( 'unknown opcode %d', $opcode ) );
		}
		if ( self::is_control( $opcode ) ) {
			if ( ! $fin ) {
				throw self::violation( 'fragmented control frame' );
			}
			if ( $length > self::MAX_CONTROL_PAYLOAD ) {
				throw self::violation( 'control frame longer than 125 bytes' );
			}
		}
		if ( false === $expect_masked && $masked ) {
			throw self::violation( 'masked frame from the server' );
		}
		if ( true === $expect_masked && ! $masked ) {
			throw self::violation( 'unmasked frame from the client' );
		}

		$offset = 2;
		if ( 126 === $length ) {
			if ( $available < 4 ) {
				return null;
			}
			$length = unpack( 'n', $buffer, 2 )[1];
			$offset = 4;
		} elseif ( 127 === $length ) {
			if ( $available < 10 ) {
				return null;
			}
			// §5.2: the most significant bit of a 64-bit length must be 0.
			if ( ord( $buffer[2] ) & 0x80 ) {
				throw self::violation( '64-bit payload length with the high bit set' );
			}
			$length = unpack( 'J', $buffer, 2 )[1];
			$offset = 10;
		}
		if ( $length > $max_payload ) {
			throw new UnexpectedValueException(
				sprintf( 'frame of %d bytes is over the %d-byte limit', $length, $max_payload ),
				self::CLOSE_TOO_BIG
			);
		}
		$mask_key = '';
		if ( $masked ) {
			if ( $available < $offset + 4 ) {
				return null;
			}
			$mask_key = substr( $buffer, $offset, 4 );
			$offset  += 4;
		}
		if ( $available < $offset + $length ) {
			return null;
		}
		$payload = substr( $buffer, $offset, $length );
		if ( $masked ) {
			$payload = self::apply_mask( $payload, $mask_key );
		}
		return array(
			'fin'      => $fin,
			'opcode'   => $opcode,
			'payload'  => $payload,
			'masked'   => $masked,
			'consumed' => $offset + $length,
		);
	}

	/**
	 * XORs data with a 4-byte key (RFC 6455 §5.3); masking and unmasking are the same operation.
	 *
	 * @param string $data Bytes to (un)mask.
	 * @param string $key  4-byte mask key.
	 * @return string
	 */
	public static function apply_mask( string $data, string $key ): string {
		$length = strlen( $data );
		if ( 0 === $length ) {
			return '';
		}
		// PHP's string XOR works byte by byte over the shorter operand: repeat the key to length.
		return $data ^ substr( str_repeat( $key, intdiv( $length + 3, 4 ) ), 0, $length );
	}

	/**
	 * Builds a close frame payload: 2-byte code + UTF-8 reason (RFC 6455 §5.5.1).
	 *
	 * The reason is cut at a character boundary so the payload stays within 125 bytes.
	 *
	 * @param int    $code   Close code (1000-4999, not one of the reserved 1004/1005/1006/1015).
	 * @param string $reason Short human-readable reason.
	 * @return string
	 * @throws InvalidArgumentException On a code that must not be sent.
	 */
	public static function close_payload( int $code, string $reason = '' ): string {
		if ( ! self::is_sendable_close_code( $code ) ) {
			throw new InvalidArgumentException( sprintf( 'close code %d cannot be sent', $code ) );
		}
		$max = self::MAX_CONTROL_PAYLOAD - 2;
		if ( strlen( $reason ) > $max ) {
			$reason = substr( $reason, 0, $max );
			// Drop a partial multi-byte sequence at the cut.
			while ( '' !== $reason && ! self::is_utf8( $reason ) ) {
				$reason = substr( $reason, 0, -1 );
			}
		}
		return pack( 'n', $code ) . $reason;
	}

	/**
	 * Reads a close frame payload.
	 *
	 * @param string $payload The close frame's payload.
	 * @return array{code: int, reason: string} Code 1005 when the payload is empty (§7.1.5).
	 * @throws UnexpectedValueException On a 1-byte payload, an invalid code or a non-UTF-8 reason.
	 */
	public static function parse_close( string $payload ): array {
		$length = strlen( $payload );
		if ( 0 === $length ) {
			return array(
				'code'   => self::CLOSE_NO_STATUS,
				'reason' => '',
			);
		}
		if ( 1 === $length ) {
			throw self::violation( 'close frame with a 1-byte payload' );
		}
		$code   = unpack( 'n', $payload )[1];
		$reason = substr( $payload, 2 );
		if ( ! self::is_sendable_close_code( $code ) ) {
			throw self::violation( sprintf( 'invalid close code %d', $code ) );
		}
		if ( ! self::is_utf8( $reason ) ) {
			throw new UnexpectedValueException( 'close reason is not valid UTF-8', self::CLOSE_INVALID_DATA );
		}
		return array(
			'code'   => $code,
			'reason' => $reason,
		);
	}

	/**
	 * The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2 step 5.4).
	 *
	 * @param string $key The base64 key the client sent.
	 * @return string
	 */
	public static function accept_key( string $key ): string {
		return base64_encode( sha1( $key . self::GUID, true ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- RFC 6455 §4.2.2.
	}

	/**
	 * Whether an opcode is a control opcode (close, ping, pong).
	 *
	 * @param int $opcode Opcode.
	 * @return bool
	 */
	public static function is_control( int $opcode ): bool {
		return 0 !== ( $opcode & 0x8 );
	}

	/**
	 * Whether a string is valid UTF-8 (text frames and close reasons must be, RFC 6455 §8.1).
	 *
	 * @param string $data Bytes.
	 * @return bool
	 */
	public static function is_utf8( string $data ): bool {
		return '' === $data || 1 === preg_match( '//u', $data );
	}

	/**
	 * Whether an opcode is defined by RFC 6455 §5.2.
	 *
	 * @param int $opcode Opcode.
	 * @return bool
	 */
	private static function is_known_opcode( int $opcode ): bool {
		return in_array( $opcode, array( 0x0, 0x1, 0x2, 0x8, 0x9, 0xA ), true );
	}

	/**
	 * Whether a close code may appear on the wire (RFC 6455 §7.4.1, §7.4.2; 1012-1014 from the IANA registry).
	 *
	 * @param int $code Close code.
	 * @return bool
	 */
	private static function is_sendable_close_code( int $code ): bool {
		if ( $code >= 3000 && $code <= 4999 ) {
			return true;
		}
		return $code >= 1000 && $code <= 1014 && ! in_array( $code, array( 1004, 1005, 1006 ), true );
	}

	/**
	 * A protocol error (close code 1002).
	 *
	 * @param string $message What was wrong.
	 * @return UnexpectedValueException
	 */
	private static function violation( string $message ): UnexpectedValueException {
		return new UnexpectedValueException( 'websocket protocol error: ' . $message, self::CLOSE_PROTOCOL_ERROR );
	}
}
