<?php
/**
 * The durable outbox: one row per changed object, collapsed per request, drained by claims
 * (Action Scheduler's claim pattern) and deleted only when the agent acked it.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Repository over the current site's `{prefix}woobrevo_outbox` table.
 */
final class WooBrevo_Outbox {

	/** How many rejected (or trimmed) events the admin sees (newest first). */
	private const REJECTED_KEEP = 100;

	/**
	 * Rows written in this request, by "blog:resource:id" => [row id, topic, extra].
	 *
	 * @var array<string, array{0:int,1:string,2:array}>
	 */
	private static array $request_rows = array();

	/** Rows added in this request (the shutdown shipper runs only when there are some). */
	private static int $added = 0;

	/**
	 * Database handle.
	 *
	 * @var wpdb
	 */
	private $db;

	/**
	 * Uses the given handle or the global $wpdb; the table follows the current site.
	 *
	 * @param wpdb|null $db Database handle.
	 */
	public function __construct( ?wpdb $db = null ) {
		global $wpdb;
		$this->db = $db ? $db : $wpdb;
	}

	/**
	 * The current site's table name.
	 *
	 * @return string
	 */
	public function table(): string {
		return $this->db->prefix . 'woobrevo_outbox';
	}

	/**
	 * The per-site prefix of event ids, created with the table so ids never repeat after a reinstall.
	 *
	 * @return string
	 */
	public function epoch(): string {
		$epoch = (string) get_option( WooBrevo_Options::OUTBOX_EPOCH, '' );
		if ( '' === $epoch ) {
			$epoch = bin2hex( random_bytes( 6 ) );
			update_option( WooBrevo_Options::OUTBOX_EPOCH, $epoch );
		}
		return $epoch;
	}

	/**
	 * Records a change. Rows for one object in one request collapse into one: `created`,
	 * `deleted` and `restored` win over `updated`, the first `status_from` and the last
	 * `status_to` are kept. A row a shipper has already claimed is never changed: a new one is written.
	 *
	 * @param string $resource    customer|order|product|variation|coupon.
	 * @param int    $resource_id Object id.
	 * @param string $action      created|updated|deleted|restored.
	 * @param array  $extra       Small extras (status_from/status_to, refund_id, previous_status, parent_id).
	 * @return void
	 * @throws RuntimeException When the database refuses the write.
	 */
	public function add( string $resource, int $resource_id, string $action, array $extra = array() ): void {
		if ( $resource_id <= 0 ) {
			return;
		}
		$key = get_current_blog_id() . ':' . $resource . ':' . $resource_id;
		if ( isset( self::$request_rows[ $key ] ) ) {
			list( $row_id, $old_action, $old_extra ) = self::$request_rows[ $key ];
			$action                                  = self::merge_action( $old_action, $action );
			$extra                                   = self::merge_extra( $old_extra, $extra );
			// `touched` always changes, so an unclaimed row always counts as affected. A row ever
			// claimed (attempts > 0) is never changed: the agent may hold its event already (sent,
			// ack lost), and it keeps the first version of an event id, so a change merged into a
			// resent row would be dropped as a duplicate (tests/chaos: a refund lost after a
			// websocket cut). The change gets a row, and an event id, of its own.
			$updated = $this->db->query(
				$this->db->prepare(
					"UPDATE {$this->table()} SET topic = %s, extra = %s, touched = touched + 1 WHERE id = %d AND claimed_by IS NULL AND attempts = 0",
					$resource . '.' . $action,
					self::encode_extra( $extra ),
					$row_id
				)
			);
			if ( 1 === $updated ) {
				self::$request_rows[ $key ] = array( $row_id, $action, $extra );
				return;
			}
		}
		$inserted = $this->db->insert(
			$this->table(),
			array(
				'resource'    => $resource,
				'resource_id' => $resource_id,
				'topic'       => $resource . '.' . $action,
				'extra'       => self::encode_extra( $extra ),
				'occurred_at' => gmdate( 'Y-m-d H:i:s' ),
			),
			array( '%s', '%d', '%s', '%s', '%s' )
		);
		if ( false === $inserted ) {
			throw new RuntimeException( 'woobrevo outbox insert failed: ' . $this->db->last_error );
		}
		self::$request_rows[ $key ] = array( (int) $this->db->insert_id, $action, $extra );
		++self::$added;
	}

	/**
	 * Forgets this request's rows: the next add() for an object writes a new row (tests; long-running CLI loops).
	 *
	 * @return void
	 */
	public static function reset_request(): void {
		self::$request_rows = array();
		self::$added        = 0;
	}

	/**
	 * How many rows this request wrote.
	 *
	 * @return int
	 */
	public static function added_in_request(): int {
		return self::$added;
	}

	/**
	 * Claims up to $limit unclaimed (or lease-expired) rows for $owner, oldest first, and returns
	 * those rows only: not the ones $owner claimed before (a pipelining shipper still has them in
	 * flight).
	 *
	 * @param string $owner         Claim owner (unique per shipper run).
	 * @param int    $limit         Most rows to claim.
	 * @param int    $lease_seconds How long the claim holds if the owner dies.
	 * @return array<int, array{id:int,event_id:string,resource:string,resource_id:int,topic:string,occurred_at:string,extra:array}>
	 * @throws RuntimeException When the database refuses the claim.
	 */
	public function claim( string $owner, int $limit, int $lease_seconds ): array {
		$now = time();
		// The rows are claimed under a name of this call, read, then handed to $owner.
		$tag     = substr( $owner, 0, 40 ) . '#' . bin2hex( random_bytes( 6 ) );
		$claimed = $this->db->query(
			$this->db->prepare(
				"UPDATE {$this->table()} SET claimed_by = %s, claimed_until = %s, attempts = attempts + 1
				WHERE claimed_by IS NULL OR claimed_until < %s ORDER BY id LIMIT %d",
				$tag,
				gmdate( 'Y-m-d H:i:s', $now + max( 1, $lease_seconds ) ),
				gmdate( 'Y-m-d H:i:s', $now ),
				max( 1, $limit )
			)
		);
		if ( false === $claimed ) {
			throw new RuntimeException( 'woobrevo outbox claim failed: ' . $this->db->last_error );
		}
		if ( 0 === $claimed ) {
			return array();
		}
		$rows = $this->db->get_results(
			$this->db->prepare( "SELECT id, resource, resource_id, topic, extra, occurred_at FROM {$this->table()} WHERE claimed_by = %s ORDER BY id", $tag ),
			ARRAY_A
		);
		$this->db->query( $this->db->prepare( "UPDATE {$this->table()} SET claimed_by = %s WHERE claimed_by = %s", $owner, $tag ) );
		$epoch = $this->epoch();
		$out   = array();
		foreach ( (array) $rows as $row ) {
			$extra = json_decode( (string) $row['extra'], true );
			$out[] = array(
				'id'          => (int) $row['id'],
				'event_id'    => $epoch . '-' . $row['id'],
				'resource'    => (string) $row['resource'],
				'resource_id' => (int) $row['resource_id'],
				'topic'       => (string) $row['topic'],
				'occurred_at' => gmdate( 'Y-m-d\TH:i:s\Z', (int) strtotime( $row['occurred_at'] . ' UTC' ) ),
				'extra'       => is_array( $extra ) ? $extra : array(),
			);
		}
		return $out;
	}

	/**
	 * Un-claims whatever $owner still holds (rows not acked go back to the queue).
	 *
	 * @param string $owner Claim owner.
	 * @return void
	 */
	public function release( string $owner ): void {
		$this->db->query(
			$this->db->prepare( "UPDATE {$this->table()} SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = %s", $owner )
		);
	}

	/**
	 * Deletes acked rows.
	 *
	 * @param int[] $row_ids Row ids.
	 * @return int Rows deleted.
	 */
	public function delete( array $row_ids ): int {
		$ids = array_values( array_filter( array_map( 'intval', $row_ids ) ) );
		if ( ! $ids ) {
			return 0;
		}
		$placeholders = implode( ',', array_fill( 0, count( $ids ), '%d' ) );
		$deleted      = $this->db->query(
			$this->db->prepare( "DELETE FROM {$this->table()} WHERE id IN ({$placeholders})", $ids ) // phpcs:ignore -- placeholders built above.
		);
		delete_transient( WooBrevo_Options::DEPTH_TRANSIENT );
		return (int) $deleted;
	}

	/**
	 * Keeps a rejected event where the admin can see it (capped list, newest first).
	 *
	 * @param array  $row     A claimed row.
	 * @param string $code    The agent's rejection code.
	 * @param string $message The agent's message.
	 * @return void
	 */
	public function record_rejected( array $row, string $code, string $message ): void {
		$list = get_option( WooBrevo_Options::REJECTED, array() );
		$list = is_array( $list ) ? $list : array();
		array_unshift(
			$list,
			array(
				'event_id'    => (string) ( $row['event_id'] ?? '' ),
				'resource'    => (string) ( $row['resource'] ?? '' ),
				'resource_id' => (int) ( $row['resource_id'] ?? 0 ),
				'topic'       => (string) ( $row['topic'] ?? '' ),
				'code'        => substr( $code, 0, 64 ),
				'message'     => substr( $message, 0, 500 ),
				'at'          => time(),
			)
		);
		update_option( WooBrevo_Options::REJECTED, array_slice( $list, 0, self::REJECTED_KEEP ), false );
	}

	/**
	 * Keeps, where the admin sees it, that an event was sent with values replaced because the
	 * agent could not have stored them (WooBrevo_Protocol::contained()); capped list, newest first.
	 *
	 * @param array    $row      A claimed row.
	 * @param string[] $problems What was replaced, one line each.
	 * @return void
	 */
	public function record_trimmed( array $row, array $problems ): void {
		$list  = get_option( WooBrevo_Options::TRIMMED, array() );
		$list  = is_array( $list ) ? $list : array();
		$shown = array_slice( $problems, 0, 3 );
		if ( count( $problems ) > 3 ) {
			/* translators: %d: how many more values were replaced. */
			$shown[] = sprintf( __( 'and %d more', 'woobrevo' ), count( $problems ) - 3 );
		}
		array_unshift(
			$list,
			array(
				'event_id'    => (string) ( $row['event_id'] ?? '' ),
				'resource'    => (string) ( $row['resource'] ?? '' ),
				'resource_id' => (int) ( $row['resource_id'] ?? 0 ),
				'topic'       => (string) ( $row['topic'] ?? '' ),
				'message'     => substr( implode( '; ', $shown ), 0, 500 ),
				'at'          => time(),
			)
		);
		update_option( WooBrevo_Options::TRIMMED, array_slice( $list, 0, self::REJECTED_KEEP ), false );
	}

	/**
	 * Events sent with values replaced, newest first.
	 *
	 * @param int $limit Most entries.
	 * @return array<int, array<string, mixed>>
	 */
	public function trimmed( int $limit = 50 ): array {
		$list = get_option( WooBrevo_Options::TRIMMED, array() );
		return is_array( $list ) ? array_slice( $list, 0, max( 0, $limit ) ) : array();
	}

	/**
	 * Rejected events, newest first.
	 *
	 * @param int $limit Most entries.
	 * @return array<int, array<string, mixed>>
	 */
	public function rejected( int $limit = 50 ): array {
		$list = get_option( WooBrevo_Options::REJECTED, array() );
		return is_array( $list ) ? array_slice( $list, 0, max( 0, $limit ) ) : array();
	}

	/**
	 * Rows waiting (claimed or not).
	 *
	 * @return int
	 */
	public function depth(): int {
		return (int) $this->db->get_var( "SELECT COUNT(*) FROM {$this->table()}" ); // phpcs:ignore -- no input.
	}

	/**
	 * Combines two actions on one object within a request.
	 *
	 * @param string $old Earlier action.
	 * @param string $new Later action.
	 * @return string
	 */
	public static function merge_action( string $old, string $new ): string {
		// An update says nothing an earlier created/deleted/restored row does not already cover.
		return 'updated' === $new ? $old : $new;
	}

	/**
	 * Combines extras: the first status_from and the last of everything else.
	 *
	 * @param array $old Earlier extra.
	 * @param array $new Later extra.
	 * @return array
	 */
	public static function merge_extra( array $old, array $new ): array {
		$merged = array_merge( $old, $new );
		if ( isset( $old['status_from'] ) ) {
			$merged['status_from'] = $old['status_from'];
		}
		return $merged;
	}

	/**
	 * JSON for the extra column (NULL when empty).
	 *
	 * @param array $extra Extra.
	 * @return string|null
	 */
	private static function encode_extra( array $extra ): ?string {
		// Invalid UTF-8 in a value (a name typed in another charset) is replaced, not a reason to lose the extra.
		return $extra ? (string) wp_json_encode( $extra, JSON_INVALID_UTF8_SUBSTITUTE ) : null;
	}
}
