<?php
/**
 * Stream protocol v1 without sockets or WordPress: builds what the plugin sends (`hello`,
 * `events`) and parses what the agent answers (`welcome`, `ack`, `error`). The plugin's mirror
 * of the agent's agent/core/protocol.py; docs/protocol.md is the authority for both.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Messages in, messages out: data only (WooBrevo_Shipper does the I/O).
 */
final class WooBrevo_Protocol {

	/** Protocol version (docs/protocol.md, `hello.protocol`). */
	public const VERSION = 1;

	/** Longest batch id (`events.batch`: 1-128 characters). */
	public const MAX_BATCH_ID = 128;

	/** An event id: 1-128 characters of [A-Za-z0-9._:-] (`events[].id`). */
	public const EVENT_ID_PATTERN = '/^[A-Za-z0-9._:-]{1,128}$/D';

	/** What a welcome without usable limits means: the agent's defaults (docs/protocol.md, "Limits"). */
	public const DEFAULT_MAX_BATCH         = 100;
	public const DEFAULT_MAX_MESSAGE_BYTES = 8388608;

	/** The smallest message limit the plugin believes (a smaller one is a misconfiguration). */
	public const MIN_MESSAGE_BYTES = 65536;

	/** How long a restore link stays valid when the agent does not say (seconds). */
	public const DEFAULT_CART_LINK_LIFETIME = 604800;

	/** The counts among a welcome's cart figures the plugin keeps (docs/protocol.md, `carts.figures`). */
	public const CART_COUNTS = array( 'active', 'abandoned', 'recovered', 'expired' );

	/** The resources whose meta a welcome's watch_meta names. */
	public const RESOURCES = array( 'customer', 'order', 'product', 'coupon' );

	/** Close code of a message that is not protocol v1 (RFC 6455 §7.4.1: protocol error). */
	public const CLOSE_PROTOCOL_ERROR = 1002;

	/** JSON as the agent reads it: UTF-8 guaranteed (a text frame must be valid UTF-8). */
	private const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE;

	/**
	 * Deepest nesting of arrays and objects in an event's payload (and its extra), the payload
	 * itself being level 1. The agent refuses an event nested deeper than it can store (docs/protocol.md,
	 * "Limits"); the plugin keeps far below that, so its events are never refused for depth.
	 */
	public const MAX_DEPTH = 64;

	/** What stands in an event for a value nested deeper than MAX_DEPTH. */
	public const TOO_DEEP = '[woobrevo: nested deeper than 64 levels; not sent]';

	/**
	 * The `hello` (first message of every connection, and the heartbeat).
	 *
	 * @param string $site_url       The site's home URL.
	 * @param int    $blog_id        The site's blog id.
	 * @param string $plugin_version WooBrevo's version.
	 * @param string $wp_version     WordPress's version.
	 * @param string $wc_version     WooCommerce's version.
	 * @return string JSON.
	 */
	public static function hello( string $site_url, int $blog_id, string $plugin_version, string $wp_version, string $wc_version ): string {
		return self::json(
			array(
				'type'           => 'hello',
				'protocol'       => self::VERSION,
				'site_url'       => $site_url,
				'blog_id'        => $blog_id,
				'plugin_version' => $plugin_version,
				'wp_version'     => $wp_version,
				'wc_version'     => $wc_version,
			)
		);
	}

	/**
	 * One event of an `events` message, encoded on its own (a batch is put together from
	 * encoded events, so each is encoded once however the batches are split).
	 *
	 * @param string                    $id          Event id.
	 * @param string                    $topic       `<resource>.<action>`.
	 * @param string                    $resource    customer, order, product, variation or coupon.
	 * @param int                       $resource_id The object's id.
	 * @param string                    $occurred_at When the hook fired, UTC ISO 8601 with Z.
	 * @param mixed                     $payload     The REST object (an array, or an object that encodes as one).
	 * @param array<string, mixed>|null $extra       Optional `extra` (status_from/status_to, refund_id…).
	 * @return string JSON.
	 */
	public static function event( string $id, string $topic, string $resource, int $resource_id, string $occurred_at, $payload, ?array $extra = null ): string {
		$event = array(
			'id'          => $id,
			'topic'       => $topic,
			'resource'    => $resource,
			'resource_id' => $resource_id,
			'occurred_at' => $occurred_at,
			'payload'     => array() === $payload ? new stdClass() : $payload,
		);
		if ( ! empty( $extra ) ) {
			$event['extra'] = $extra;
		}
		return self::json( $event );
	}

	/**
	 * event(), or null when the event cannot be encoded as it is: nested deeper than MAX_DEPTH,
	 * a NAN or INF number, a value JSON has no form for (json_encode() fails). Invalid UTF-8 is
	 * no reason: it is replaced by U+FFFD, as in every message.
	 *
	 * @param string                    $id          Event id.
	 * @param string                    $topic       `<resource>.<action>`.
	 * @param string                    $resource    Resource.
	 * @param int                       $resource_id The object's id.
	 * @param string                    $occurred_at UTC ISO 8601 with Z.
	 * @param mixed                     $payload     The REST object.
	 * @param array<string, mixed>|null $extra       Optional `extra`.
	 * @return string|null JSON.
	 */
	public static function event_if_encodable( string $id, string $topic, string $resource, int $resource_id, string $occurred_at, $payload, ?array $extra = null ): ?string {
		$event = array(
			'id'          => $id,
			'topic'       => $topic,
			'resource'    => $resource,
			'resource_id' => $resource_id,
			'occurred_at' => $occurred_at,
			'payload'     => array() === $payload ? new stdClass() : $payload,
		);
		if ( ! empty( $extra ) ) {
			$event['extra'] = $extra;
		}
		// Checked first: json_encode() walks the whole value whatever its depth argument, and
		// a value some thousands of levels deep crashes PHP there.
		if ( ! self::fits( $event['payload'], self::MAX_DEPTH ) || ! self::fits( $extra, self::MAX_DEPTH ) ) {
			return null;
		}
		// json_encode()'s depth counts the event object too: payload level N is depth N + 1.
		$json = json_encode( $event, self::JSON_FLAGS, self::MAX_DEPTH + 1 ); // phpcs:ignore WordPress.WP.AlternativeFunctions.json_encode_json_encode -- a pure class: no WordPress here.
		return false === $json ? null : $json;
	}

	/**
	 * Whether a value is one contained() leaves as it is: arrays and objects nested at most
	 * $levels deep, no NAN or INF, nothing JSON has no form for. Stops at the first problem;
	 * recursion is bounded by $levels.
	 *
	 * @param mixed $value  A payload or an extra.
	 * @param int   $levels Levels of nesting allowed from here (the value itself is level 1).
	 * @return bool
	 */
	public static function fits( $value, int $levels ): bool {
		if ( $value instanceof JsonSerializable ) {
			$value = $value->jsonSerialize();
		}
		if ( is_float( $value ) ) {
			return is_finite( $value );
		}
		if ( null === $value || is_scalar( $value ) ) {
			return true;
		}
		if ( ( ! is_array( $value ) && ! is_object( $value ) ) || $levels < 1 ) {
			return false;
		}
		foreach ( is_object( $value ) ? get_object_vars( $value ) : $value as $item ) {
			if ( ! self::fits( $item, $levels - 1 ) ) {
				return false;
			}
		}
		return true;
	}

	/**
	 * A value as the agent can store it, and what had to change: arrays and objects nested
	 * deeper than $levels become TOO_DEEP, NAN and INF numbers and values JSON has no form for
	 * (resources) become null. Objects are read as json_encode() reads them (JsonSerializable,
	 * else their public properties) and stay objects. Recursion is bounded by $levels.
	 *
	 * @param mixed  $value  A payload or an extra.
	 * @param int    $levels Levels of nesting allowed from here (the value itself is level 1).
	 * @param string $path   Where $value is, for the problems ("payload.meta_data.0.value").
	 * @return array{0: mixed, 1: string[]} The value, and one line per change ("PATH: why").
	 */
	public static function contained( $value, int $levels = self::MAX_DEPTH, string $path = 'payload' ): array {
		if ( $value instanceof JsonSerializable ) {
			$value = $value->jsonSerialize();
		}
		if ( is_float( $value ) && ! is_finite( $value ) ) {
			return array( null, array( $path . ': not a finite number (' . ( is_nan( $value ) ? 'NAN' : 'INF' ) . '), sent as null' ) );
		}
		if ( null === $value || is_scalar( $value ) ) {
			return array( $value, array() );
		}
		if ( ! is_array( $value ) && ! is_object( $value ) ) {
			return array( null, array( $path . ': a ' . gettype( $value ) . ' has no JSON form, sent as null' ) );
		}
		if ( $levels < 1 ) {
			$steps = explode( '.', $path );
			$where = count( $steps ) > 6 ? implode( '.', array_slice( $steps, 0, 4 ) ) . '.….' . end( $steps ) : $path;
			return array( self::TOO_DEEP, array( $where . ': nested deeper than ' . self::MAX_DEPTH . ' levels, replaced by a marker' ) );
		}
		$object   = is_object( $value );
		$out      = array();
		$problems = array();
		foreach ( $object ? get_object_vars( $value ) : $value as $key => $item ) {
			list( $out[ $key ], $found ) = self::contained( $item, $levels - 1, $path . '.' . $key );
			$problems                    = array_merge( $problems, $found );
		}
		return array( $object ? (object) $out : $out, $problems );
	}

	/**
	 * The payload of an object that is gone: `{"id": N}`, for variations `{"id": N, "parent_id": P}`.
	 *
	 * @param int      $id        The object's id.
	 * @param int|null $parent_id A variation's product, if known.
	 * @return array<string, int>
	 */
	public static function deleted_payload( int $id, ?int $parent_id = null ): array {
		$payload = array( 'id' => $id );
		if ( null !== $parent_id ) {
			$payload['parent_id'] = $parent_id;
		}
		return $payload;
	}

	/**
	 * An `events` message around events encoded by event().
	 *
	 * @param string   $batch  Batch id (1-128 characters).
	 * @param string[] $events Encoded events.
	 * @return string JSON.
	 */
	public static function events( string $batch, array $events ): string {
		return '{"type":"events","batch":' . self::json( $batch ) . ',"events":[' . implode( ',', $events ) . ']}';
	}

	/**
	 * An `export` request (sent after `welcome`): what the agent holds about one e-mail on
	 * this site's account, answered by an `export_result` with the same request id.
	 *
	 * @param string $request Request id, echoed in the answer.
	 * @param string $email   The person's e-mail.
	 * @return string JSON.
	 */
	public static function export( string $request, string $email ): string {
		return self::json(
			array(
				'type'    => 'export',
				'request' => $request,
				'email'   => $email,
			)
		);
	}

	/**
	 * Parses one message from the agent.
	 *
	 * - `welcome`: {type, site, max_batch, max_message_bytes, watch_meta, server_time, carts,
	 *   cart_figures, consent}, limits defaulted and bounded (max_batch ≥ 1, max_message_bytes ≥
	 *   MIN_MESSAGE_BYTES), cart_figures null unless `carts.figures` is whole and well typed,
	 *   consent null unless `consent.mode` is implied or required;
	 * - `ack`: {type, batch (null when missing), accepted: string[], rejected: list of {id, code, message}},
	 *   entries that cannot name an event dropped;
	 * - `error`: {type, code, message};
	 * - `export_result`: {type, request, groups}, groups as export_groups() keeps them;
	 * - any other type: {type} only (fields not listed are ignored, docs/protocol.md "Messages").
	 *
	 * @param string $text A text frame.
	 * @return array<string, mixed>
	 * @throws UnexpectedValueException When it is not a JSON object with a type (code CLOSE_PROTOCOL_ERROR).
	 */
	public static function parse( string $text ): array {
		$message = json_decode( $text, true );
		if ( ! is_array( $message ) || ! isset( $message['type'] ) ) {
			throw new UnexpectedValueException( 'the agent sent something that is not a protocol message', self::CLOSE_PROTOCOL_ERROR );
		}
		$type = is_string( $message['type'] ) ? $message['type'] : '';
		switch ( $type ) {
			case 'welcome':
				return self::parse_welcome( $message );
			case 'ack':
				return self::parse_ack( $message );
			case 'export_result':
				return array(
					'type'    => 'export_result',
					'request' => self::text( $message['request'] ?? null, '' ),
					'groups'  => self::export_groups( $message['groups'] ?? null ),
				);
			case 'error':
				return array(
					'type'    => 'error',
					'code'    => self::text( $message['code'] ?? null, 'error' ),
					'message' => self::text( $message['message'] ?? null, '' ),
				);
			default:
				return array( 'type' => $type );
		}
	}

	/**
	 * Whether a string is a valid event id.
	 *
	 * @param string $id Candidate.
	 * @return bool
	 */
	public static function is_event_id( string $id ): bool {
		return 1 === preg_match( self::EVENT_ID_PATTERN, $id );
	}

	/**
	 * The fields of a welcome the plugin uses.
	 *
	 * @param array<string, mixed> $message Decoded welcome.
	 * @return array{type: string, site: string, max_batch: int, max_message_bytes: int, watch_meta: array<string, mixed>, server_time: string, carts: array{enabled: bool, link_lifetime: int}, cart_figures: array{active: int, abandoned: int, recovered: int, expired: int, recovered_revenue: float, recovery_rate: float|null}|null, consent: array{mode: string}|null}
	 */
	private static function parse_welcome( array $message ): array {
		return array(
			'type'              => 'welcome',
			'site'              => self::text( $message['site'] ?? null, '' ),
			'max_batch'         => max( 1, self::integer( $message['max_batch'] ?? null, self::DEFAULT_MAX_BATCH ) ),
			'max_message_bytes' => max( self::MIN_MESSAGE_BYTES, self::integer( $message['max_message_bytes'] ?? null, self::DEFAULT_MAX_MESSAGE_BYTES ) ),
			'watch_meta'        => is_array( $message['watch_meta'] ?? null ) ? $message['watch_meta'] : array(),
			'server_time'       => self::text( $message['server_time'] ?? null, '' ),
			'carts'             => self::carts( $message['carts'] ?? null ),
			'cart_figures'      => self::cart_figures( is_array( $message['carts'] ?? null ) ? ( $message['carts']['figures'] ?? null ) : null ),
			'consent'           => self::consent( $message['consent'] ?? null ),
		);
	}

	/**
	 * A welcome's `consent` field: {mode: implied|required}, or null when the agent sent none
	 * (an older agent) or a mode the plugin does not know.
	 *
	 * @param mixed $value The field.
	 * @return array{mode: string}|null
	 */
	private static function consent( $value ): ?array {
		$mode = is_array( $value ) ? ( $value['mode'] ?? null ) : null;
		return in_array( $mode, array( 'implied', 'required' ), true ) ? array( 'mode' => $mode ) : null;
	}

	/**
	 * An export_result's groups: each {id, label, items: [{id, data: [{name, value}]}]} with every
	 * field a string (scalars are turned into text); a group without an id, an item without an id
	 * or a pair without a name is dropped, so what WordPress shows is always well formed.
	 *
	 * @param mixed $value The field.
	 * @return list<array{id: string, label: string, items: list<array{id: string, data: list<array{name: string, value: string}>}>}>
	 */
	private static function export_groups( $value ): array {
		$groups = array();
		foreach ( is_array( $value ) ? $value : array() as $group ) {
			$id = is_array( $group ) ? self::text( $group['id'] ?? null, '' ) : '';
			if ( '' === $id ) {
				continue;
			}
			$items = array();
			foreach ( self::items( $group['items'] ?? null ) as $item ) {
				$item_id = is_array( $item ) ? self::text( $item['id'] ?? null, '' ) : '';
				if ( '' === $item_id ) {
					continue;
				}
				$data = array();
				foreach ( self::items( $item['data'] ?? null ) as $pair ) {
					$name = is_array( $pair ) ? self::text( $pair['name'] ?? null, '' ) : '';
					if ( '' !== $name ) {
						$data[] = array(
							'name'  => $name,
							'value' => self::text( $pair['value'] ?? null, '' ),
						);
					}
				}
				$items[] = array(
					'id'   => $item_id,
					'data' => $data,
				);
			}
			$groups[] = array(
				'id'    => $id,
				'label' => self::text( $group['label'] ?? null, $id ),
				'items' => $items,
			);
		}
		return $groups;
	}

	/**
	 * A welcome's `carts.figures` (the site's cart figures, for the status panel): counts as
	 * non-negative integers, the recovered revenue a non-negative number, the recovery rate one
	 * or null (nothing abandoned yet). Anything missing or of another type: null, all of it
	 * (no figures rather than wrong ones; an older agent sends none).
	 *
	 * @param mixed $value The field.
	 * @return array{active: int, abandoned: int, recovered: int, expired: int, recovered_revenue: float, recovery_rate: float|null}|null
	 */
	private static function cart_figures( $value ): ?array {
		if ( ! is_array( $value ) || ! array_key_exists( 'recovery_rate', $value ) ) {
			return null;
		}
		$figures = array();
		foreach ( self::CART_COUNTS as $key ) {
			$count = $value[ $key ] ?? null;
			if ( ! is_int( $count ) || $count < 0 ) {
				return null;
			}
			$figures[ $key ] = $count;
		}
		$revenue = self::amount( $value['recovered_revenue'] ?? null );
		$rate    = $value['recovery_rate'];
		if ( null === $revenue || ( null !== $rate && null === self::amount( $rate ) ) ) {
			return null;
		}
		$figures['recovered_revenue'] = $revenue;
		$figures['recovery_rate']     = null === $rate ? null : self::amount( $rate );
		return $figures;
	}

	/**
	 * A JSON number that is finite and not negative, as a float; null for anything else.
	 *
	 * @param mixed $value Field value.
	 * @return float|null
	 */
	private static function amount( $value ): ?float {
		if ( ! is_int( $value ) && ! is_float( $value ) ) {
			return null;
		}
		return is_finite( (float) $value ) && $value >= 0 ? (float) $value : null;
	}

	/**
	 * A welcome's `carts` field: capture on, links valid 7 days, unless the agent says otherwise
	 * (an older agent sends no field). A lifetime is at least a minute.
	 *
	 * @param mixed $value The field.
	 * @return array{enabled: bool, link_lifetime: int}
	 */
	private static function carts( $value ): array {
		$value = is_array( $value ) ? $value : array();
		return array(
			'enabled'       => ! array_key_exists( 'enabled', $value ) || false !== $value['enabled'],
			'link_lifetime' => max( 60, self::integer( $value['link_lifetime'] ?? null, self::DEFAULT_CART_LINK_LIFETIME ) ),
		);
	}

	/**
	 * The fields of an ack the plugin uses.
	 *
	 * @param array<string, mixed> $message Decoded ack.
	 * @return array{type: string, batch: ?string, accepted: string[], rejected: list<array{id: string, code: string, message: string}>}
	 */
	private static function parse_ack( array $message ): array {
		$accepted = array();
		foreach ( self::items( $message['accepted'] ?? null ) as $id ) {
			if ( is_string( $id ) ) {
				$accepted[] = $id;
			}
		}
		$rejected = array();
		foreach ( self::items( $message['rejected'] ?? null ) as $item ) {
			if ( is_array( $item ) && is_string( $item['id'] ?? null ) ) {
				$rejected[] = array(
					'id'      => $item['id'],
					'code'    => self::text( $item['code'] ?? null, 'rejected' ),
					'message' => self::text( $item['message'] ?? null, '' ),
				);
			}
		}
		return array(
			'type'     => 'ack',
			'batch'    => is_string( $message['batch'] ?? null ) ? $message['batch'] : null,
			'accepted' => $accepted,
			'rejected' => $rejected,
		);
	}

	/**
	 * A list field: an array as is, a lone value as a list of one, nothing as empty.
	 *
	 * @param mixed $value Field value.
	 * @return array<int|string, mixed>
	 */
	private static function items( $value ): array {
		if ( null === $value ) {
			return array();
		}
		return is_array( $value ) ? $value : array( $value );
	}

	/**
	 * A scalar field as text, or the default.
	 *
	 * @param mixed  $value   Field value.
	 * @param string $default When missing or not a scalar.
	 * @return string
	 */
	private static function text( $value, string $default ): string {
		if ( null === $value || ! is_scalar( $value ) ) {
			return $default;
		}
		return (string) $value;
	}

	/**
	 * A numeric field as an integer, or the default.
	 *
	 * @param mixed $value   Field value.
	 * @param int   $default When missing or not numeric.
	 * @return int
	 */
	private static function integer( $value, int $default ): int {
		return is_numeric( $value ) ? (int) $value : $default;
	}

	/**
	 * JSON as the agent reads it.
	 *
	 * @param mixed $value Value.
	 * @return string
	 */
	private static function json( $value ): string {
		return (string) json_encode( $value, self::JSON_FLAGS ); // phpcs:ignore WordPress.WP.AlternativeFunctions.json_encode_json_encode -- a pure class: no WordPress here.
	}
}
