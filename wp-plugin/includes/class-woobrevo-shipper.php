<?php
/**
 * Ships outbox rows to the agent over the stream protocol v1 (docs/protocol.md).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * One tick: lock, connect, hello/welcome, claim + build + send batches (up to PIPELINE_DEPTH in
 * flight, the payloads of a batch built with one REST collection request per resource), delete
 * the rows of each acked batch, unlock.
 *
 * Two guards keep two shippers of one site from sending the same rows:
 * - a MariaDB named lock per site (GET_LOCK with timeout 0): a second shipper returns at once
 *   instead of opening a second connection. The lock belongs to the database connection, so a
 *   PHP process that dies releases it;
 * - the outbox claim (an UPDATE … SET claim = owner with a lease): a row is sent only by the
 *   owner that claimed it, which still holds if the lock was lost (a reconnect of $wpdb).
 * The agent dedupes on event ids too, so a resend after a lost ack is safe (protocol: "ack").
 */
final class WooBrevo_Shipper {

	/** Stream protocol version (docs/protocol.md). */
	public const PROTOCOL = WooBrevo_Protocol::VERSION;

	/** Options holding the backoff (per site): consecutive failures, and no attempt before this unix time. */
	public const BACKOFF_STEP_OPTION  = WooBrevo_Options::BACKOFF_STEP;
	public const BACKOFF_UNTIL_OPTION = WooBrevo_Options::BACKOFF_UNTIL;

	/** Longest backoff, seconds (protocol: "1 s, 2 s, 4 s … 5 min, jittered"). */
	public const MAX_BACKOFF = 300;

	/** Seconds between heartbeats (hello) on a long-lived `wp woobrevo stream` connection. */
	public const STREAM_HEARTBEAT = 60;

	/** Longest sleep of `wp woobrevo stream` in a backoff: a settings change that ends it is seen within this. */
	public const STREAM_RECHECK = 5;

	/** Bytes kept free under max_message_bytes for the envelope and JSON escaping slack. */
	private const ENVELOPE_BYTES = 4096;

	/**
	 * Most batches in flight before the shipper waits for the oldest ack. The agent commits up to
	 * 4 batches of a connection together and reads no further until the oldest is acked
	 * (protocol: "Pipelining"), so a 5th would only wait in its buffers. Filter:
	 * `woobrevo_ship_pipeline_depth` (1 sends a batch only after the previous one's ack).
	 */
	public const PIPELINE_DEPTH = 4;

	/** Seconds to wait for the ack of the oldest batch in flight. */
	private const ACK_TIMEOUT = 30.0;

	/** @var WooBrevo_Outbox */
	private WooBrevo_Outbox $outbox;

	/** @var WooBrevo_Payloads */
	private WooBrevo_Payloads $payloads;

	/** @var callable(): WooBrevo_Ws_Client */
	private $client_factory;

	/** @var string Claim owner for this shipper. */
	private string $owner;

	/** @var int Batches sent by this shipper (part of batch ids). */
	private int $batch_seq = 0;

	/** @var array{max_batch: int, max_message_bytes: int, watch_meta: array<string, string[]>} Limits from the last welcome. */
	private array $welcome = array(
		'max_batch'         => WooBrevo_Protocol::DEFAULT_MAX_BATCH,
		'max_message_bytes' => WooBrevo_Protocol::DEFAULT_MAX_MESSAGE_BYTES,
		'watch_meta'        => array(),
	);

	/** @var bool This tick or connection left a row's problem in last_error (a payload not built, an event over the message limit): success keeps it. */
	private bool $row_problem = false;

	/** @var string|null Name of the lock held by this shipper. */
	private ?string $lock = null;

	/** @var callable(): float Clock; injectable for tests. */
	private $clock;

	/**
	 * Creates a shipper for the current site.
	 *
	 * @param WooBrevo_Outbox                    $outbox         The current site's outbox.
	 * @param WooBrevo_Payloads                  $payloads       Builds REST bodies at ship time.
	 * @param (callable(): WooBrevo_Ws_Client)|null $client_factory Makes a client; tests inject one.
	 */
	public function __construct( WooBrevo_Outbox $outbox, WooBrevo_Payloads $payloads, ?callable $client_factory = null ) {
		$this->outbox         = $outbox;
		$this->payloads       = $payloads;
		$this->client_factory = $client_factory ?? static fn(): WooBrevo_Ws_Client => new WooBrevo_Ws_Client();
		$this->owner          = substr( 'ship-' . getmypid() . '-' . bin2hex( random_bytes( 6 ) ), 0, 40 );
		$this->clock          = static fn(): float => microtime( true );
	}

	/**
	 * Whether this request may ship now: never inside a shopper's request before its response
	 * is sent. CLI (WP-CLI, tests) and WP-Cron may; a web request only from `shutdown` once the
	 * response was handed off (fastcgi_finish_request/litespeed_finish_request exist there).
	 * A tick an administrator asked for (tick()'s $by_admin) skips this check.
	 *
	 * @return bool
	 */
	public static function may_ship_in_this_request(): bool {
		if ( 'cli' === PHP_SAPI || wp_doing_cron() ) {
			return true;
		}
		return did_action( 'shutdown' ) > 0
			&& ( function_exists( 'fastcgi_finish_request' ) || function_exists( 'litespeed_finish_request' ) );
	}

	/**
	 * The delay before attempt number $failures + 1: 1 s, 2 s, 4 s … MAX_BACKOFF, each drawn
	 * in [half, full] so that many sites do not retry in step.
	 *
	 * @param int   $failures Consecutive failures so far (≥ 1).
	 * @param float $random   A number in [0, 1].
	 * @return int Seconds.
	 */
	public static function backoff_delay( int $failures, float $random ): int {
		$full = min( self::MAX_BACKOFF, 2 ** min( 20, max( 0, $failures - 1 ) ) );
		return max( 1, (int) round( $full * ( 0.5 + 0.5 * $random ) ) );
	}

	/**
	 * One tick.
	 *
	 * $by_admin: an administrator asked for this tick (Test connection, a saved agent URL or
	 * token), in a wp-admin request or WP-CLI, never a shopper's request. It runs inside the
	 * request (the admin waits for its outcome) and whatever the backoff, which is for
	 * unattended ticks.
	 *
	 * @param int  $time_budget_seconds Wall-clock budget; no new batch starts after it.
	 * @param bool $by_admin            Asked for by an administrator (see above).
	 * @return array{sent: int, acked: int, rejected: int, error: ?string, error_code: int, skipped: ?string, batches: int}
	 *         error_code: the failure's code (an HTTP status when the agent refused the upgrade, a close code…; 0 when none).
	 */
	public function tick( int $time_budget_seconds = 20, bool $by_admin = false ): array {
		$stats    = array(
			'sent'       => 0,
			'acked'      => 0,
			'rejected'   => 0,
			'error'      => null,
			'error_code' => 0,
			'skipped'    => $this->skip_reason( $by_admin ),
			'batches'    => 0,
		);
		$deadline          = $this->now() + max( 1, $time_budget_seconds );
		$this->row_problem = false;
		if ( null === $stats['skipped'] && ! $this->acquire_lock() ) {
			$stats['skipped'] = __( 'another shipper is running for this site', 'woobrevo' );
		}
		if ( null !== $stats['skipped'] ) {
			return $stats;
		}
		if ( 'cli' !== PHP_SAPI ) {
			ignore_user_abort( true );
		}

		$client = null;
		try {
			$client = $this->open( (string) WooBrevo_Settings::get( 'agent_url' ), (string) WooBrevo_Settings::get( 'token' ), $deadline );
			$this->ship( $client, $deadline, $stats );
			$this->on_success();
			$client->close( WooBrevo_Ws_Frame::CLOSE_NORMAL, '', 1.0 );
		} catch ( Throwable $e ) {
			$stats['error']      = $this->on_failure( $e, $client );
			$stats['error_code'] = (int) $e->getCode();
		} finally {
			$this->outbox->release( $this->owner );
			$this->release_lock();
		}
		return $stats;
	}

	/**
	 * Why a tick must not run now, or null: a shopper's request (unless an administrator asked),
	 * a backoff (likewise), or no agent URL or token.
	 *
	 * @param bool $by_admin Asked for by an administrator (see tick()).
	 * @return string|null
	 */
	private function skip_reason( bool $by_admin ): ?string {
		if ( ! $by_admin && ! self::may_ship_in_this_request() ) {
			return __( 'inside a request whose response is not sent yet', 'woobrevo' );
		}
		$backoff = $this->backoff();
		if ( ! $by_admin && $backoff['until'] > time() ) {
			/* translators: 1: seconds until the next attempt, 2: the error that started the backoff. */
			return sprintf( __( 'backing off for %1$d s after: %2$s', 'woobrevo' ), $backoff['until'] - time(), $backoff['reason'] );
		}
		if ( '' === (string) WooBrevo_Settings::get( 'agent_url' ) || '' === (string) WooBrevo_Settings::get( 'token' ) ) {
			return __( 'agent URL or site token not set', 'woobrevo' );
		}
		return null;
	}

	/**
	 * Long-running loop for `wp woobrevo stream`: one connection, batches as rows appear,
	 * a hello every STREAM_HEARTBEAT seconds, reconnect with backoff. A new agent URL, token or
	 * TLS setting saved by another process reconnects with it (and ends the backoff).
	 *
	 * @param int $max_seconds Stop after this many seconds (0: run until killed); for tests.
	 */
	public function stream( int $max_seconds = 0 ): void {
		$end = $max_seconds > 0 ? $this->now() + $max_seconds : INF;
		while ( $this->now() < $end ) {
			// Options another process wrote (the settings screen ending the backoff, a new URL)
			// are read from the database, not from this long-lived process's cache.
			self::flush_runtime_cache();
			$until = (float) $this->backoff()['until'];
			if ( $until > time() ) {
				$this->sleep_until( min( $end, $this->now() + min( self::STREAM_RECHECK, $until - time() ) ) );
				continue;
			}
			$url      = (string) WooBrevo_Settings::get( 'agent_url' );
			$token    = (string) WooBrevo_Settings::get( 'token' );
			$settings = self::connection_settings();
			if ( '' === $url || '' === $token || ! $this->acquire_lock() ) {
				$this->sleep_until( min( $end, $this->now() + 10 ) );
				continue;
			}
			$client            = null;
			$this->row_problem = false;
			try {
				$client = $this->open( $url, $token, min( $end, $this->now() + 30 ) );
				$this->on_success();
				$this->stream_on( $client, $end, $settings );
				$client->close( WooBrevo_Ws_Frame::CLOSE_NORMAL, '', 1.0 );
			} catch ( Throwable $e ) {
				$this->on_failure( $e, $client ); // The backoff check at the top of the loop waits.
			} finally {
				$this->outbox->release( $this->owner );
				$this->release_lock();
			}
		}
	}

	/**
	 * Ships on one open connection until $end or until the connection settings change: batches
	 * as rows appear, a hello every STREAM_HEARTBEAT seconds, pings answered while idle.
	 *
	 * @param WooBrevo_Ws_Client $client   Open client after welcome.
	 * @param float              $end      When to stop.
	 * @param string             $settings connection_settings() the connection was opened with.
	 * @throws RuntimeException When the connection fails (the caller backs off).
	 */
	private function stream_on( WooBrevo_Ws_Client $client, float $end, string $settings ): void {
		$beat = $this->now();
		while ( $this->now() < $end ) {
			$stats = array(
				'sent'     => 0,
				'acked'    => 0,
				'rejected' => 0,
				'batches'  => 0,
			);
			$this->ship( $client, min( $end, $this->now() + 20 ), $stats );
			if ( $this->now() - $beat >= self::STREAM_HEARTBEAT ) {
				$this->hello( $client, $this->now() + 15 );
				$beat = $this->now();
				continue;
			}
			if ( 0 === $stats['sent'] && ! $this->idle( $client, $end, $settings ) ) {
				return; // Saved meanwhile: reconnect with the new settings.
			}
		}
	}

	/**
	 * Nothing to ship: waits a second, answering the agent's pings meanwhile.
	 *
	 * @param WooBrevo_Ws_Client $client   Open client.
	 * @param float              $end      When the stream stops.
	 * @param string             $settings connection_settings() the connection was opened with.
	 * @return bool False when the connection settings changed meanwhile.
	 * @throws RuntimeException On an `error` or garbage from the agent.
	 */
	private function idle( WooBrevo_Ws_Client $client, float $end, string $settings ): bool {
		$message = $client->receive( min( 1.0, max( 0.0, $end - $this->now() ) ) );
		if ( null !== $message ) {
			$this->parse_message( $message );
		}
		self::flush_runtime_cache();
		return self::connection_settings() === $settings;
	}

	/**
	 * The settings a connection is opened with, to notice a change on a long-lived one.
	 *
	 * @return string
	 */
	private static function connection_settings(): string {
		return (string) wp_json_encode( array_map( array( 'WooBrevo_Settings', 'get' ), array( 'agent_url', 'token', 'tls_verify', 'ca_file' ) ) );
	}

	/**
	 * Forgets this process's in-memory object cache (WordPress ≥ 6.0 without a persistent cache).
	 */
	private static function flush_runtime_cache(): void {
		if ( function_exists( 'wp_cache_flush_runtime' ) ) {
			wp_cache_flush_runtime();
		}
	}

	/**
	 * Connects and exchanges hello/welcome.
	 *
	 * @param string $url      Agent URL.
	 * @param string $token    Site token.
	 * @param float  $deadline Tick deadline.
	 * @return WooBrevo_Ws_Client
	 */
	private function open( string $url, string $token, float $deadline ): WooBrevo_Ws_Client {
		$client = ( $this->client_factory )();
		$client->connect( $url, $token, $this->connect_options( min( 5.0, max( 1.0, $deadline - $this->now() ) ) ) );
		// Protocol: the agent waits 10 s for hello; its welcome comes at once.
		$this->hello( $client, $this->now() + 10 );
		return $client;
	}

	/**
	 * The client options of the current site's settings.
	 *
	 * @param float $timeout Seconds for TCP connect + TLS + upgrade.
	 * @return array<string, mixed>
	 */
	private function connect_options( float $timeout ): array {
		return array(
			'timeout'      => $timeout,
			'read_timeout' => 10.0,
			'verify_peer'  => '0' !== (string) WooBrevo_Settings::get( 'tls_verify' ),
			'cafile'       => (string) WooBrevo_Settings::get( 'ca_file' ),
			'user_agent'   => 'WooBrevo/' . ( defined( 'WOOBREVO_VERSION' ) ? WOOBREVO_VERSION : '0' ),
		);
	}

	/**
	 * The first of $urls where the agent's stream answers (Test connection, after the agent URL's
	 * path was refused): its handshake succeeds, or is refused for the token only (HTTP 401/403,
	 * which the agent checks after the path). Opens one connection per URL tried, nothing sent.
	 *
	 * @param string[] $urls  Candidate agent URLs, most likely first.
	 * @param string   $token Site token.
	 * @return string|null
	 */
	public function find_stream_url( array $urls, string $token ): ?string {
		foreach ( $urls as $url ) {
			$client = ( $this->client_factory )();
			try {
				$client->connect( $url, $token, $this->connect_options( 5.0 ) );
				$client->close( WooBrevo_Ws_Frame::CLOSE_NORMAL, '', 0.5 );
				return $url;
			} catch ( Throwable $e ) {
				if ( in_array( (int) $e->getCode(), array( 401, 403 ), true ) ) {
					return $url;
				}
			}
		}
		return null;
	}

	/**
	 * Sends hello (also the heartbeat) and waits for welcome; caches its limits and watch_meta.
	 *
	 * @param WooBrevo_Ws_Client $client   Open client.
	 * @param float              $deadline Time limit for the welcome.
	 * @throws RuntimeException On anything but a welcome.
	 */
	private function hello( WooBrevo_Ws_Client $client, float $deadline ): void {
		$client->send_text(
			WooBrevo_Protocol::hello(
				home_url( '/' ),
				get_current_blog_id(),
				defined( 'WOOBREVO_VERSION' ) ? WOOBREVO_VERSION : '0.0.0',
				(string) get_bloginfo( 'version' ),
				defined( 'WC_VERSION' ) ? (string) WC_VERSION : ''
			)
		);
		do {
			// An ack of an earlier batch on a long-lived connection can arrive first: ignore it.
			$message = $this->receive_message( $client, $deadline, 'welcome' );
		} while ( 'welcome' !== $message['type'] );
		$this->remember_welcome( $message );
	}

	/**
	 * Keeps a welcome's limits and watch_meta for this shipper, and caches them in the options
	 * for the capture hooks (watch_meta) and the status screen; written only on change. The cart
	 * figures, when the welcome has them, are kept with the time received.
	 *
	 * @param array<string, mixed> $welcome A welcome from WooBrevo_Protocol::parse().
	 */
	private function remember_welcome( array $welcome ): void {
		$this->welcome['max_batch']         = (int) $welcome['max_batch'];
		$this->welcome['max_message_bytes'] = (int) $welcome['max_message_bytes'];
		$this->welcome['watch_meta']        = (array) $welcome['watch_meta'];
		if ( WooBrevo_Settings::get( 'watch_meta' ) !== $this->welcome['watch_meta'] ) {
			WooBrevo_Settings::set( 'watch_meta', $this->welcome['watch_meta'] );
		}
		foreach ( array( 'max_batch', 'max_message_bytes' ) as $key ) {
			if ( (int) WooBrevo_Settings::get( $key ) !== $this->welcome[ $key ] ) {
				WooBrevo_Settings::set( $key, $this->welcome[ $key ] );
			}
		}
		if ( isset( $welcome['carts'] ) && is_array( $welcome['carts'] ) ) {
			WooBrevo_Carts::remember_settings( $welcome['carts'] );
		}
		// The status panel's consent mode; an agent that sends none behaves as `implied` (docs/protocol.md).
		WooBrevo_Consent::remember_settings( is_array( $welcome['consent'] ?? null ) ? $welcome['consent'] : array( 'mode' => 'implied' ) );
		if ( isset( $welcome['cart_figures'] ) && is_array( $welcome['cart_figures'] ) ) {
			// The status panel's "Abandoned carts", as of this welcome (every tick brings fresh ones).
			WooBrevo_Settings::set(
				'cart_figures',
				array(
					'figures' => $welcome['cart_figures'],
					'at'      => (int) $this->now(),
				)
			);
		}
	}

	/**
	 * Claims and sends batches until the outbox is empty or the deadline passes, keeping up to
	 * PIPELINE_DEPTH batches in flight: the next batch is claimed and built while the agent
	 * commits the earlier ones. Each ack deletes its batch's rows; returns once every batch sent
	 * is acked (a failure throws, and the rows not acked stay in the outbox).
	 *
	 * @param WooBrevo_Ws_Client   $client   Open client after welcome.
	 * @param float                $deadline No new batch starts after it.
	 * @param array<string, mixed> $stats    Counters, updated.
	 */
	private function ship( WooBrevo_Ws_Client $client, float $deadline, array &$stats ): void {
		$max_batch = $this->welcome['max_batch'];
		$max_bytes = $this->welcome['max_message_bytes'] - self::ENVELOPE_BYTES;
		/**
		 * How many batches the shipper keeps in flight before it waits for the oldest ack.
		 *
		 * The agent commits up to 4 batches of one connection together and reads no further
		 * until the oldest is acked (docs/protocol.md, "Pipelining"); the value is kept within
		 * 1-4. 1 sends a batch only after the previous one's ack.
		 *
		 * @since 0.1.0
		 * @param int $depth Batches in flight; 4 (WooBrevo_Shipper::PIPELINE_DEPTH) by default.
		 */
		$depth     = max( 1, min( self::PIPELINE_DEPTH, (int) apply_filters( 'woobrevo_ship_pipeline_depth', self::PIPELINE_DEPTH ) ) );
		// A claim lasts past the deadline plus the acks still awaited then, so a shipper that dies frees its rows soon.
		$lease     = (int) ceil( max( 0.0, $deadline - $this->now() ) ) + 60;
		$held      = array(); // Encoded events claimed but not sent yet (they did not fit the last batch).
		$in_flight = array(); // Batch id => its rows by event id, oldest first.
		$drained   = false;   // The outbox had nothing more to claim.
		while ( true ) {
			$batch = array();
			if ( ! $drained && $this->now() < $deadline ) {
				$batch   = $this->next_batch( $held, $max_batch, $max_bytes, $lease, $deadline );
				$drained = array() === $batch;
			}
			if ( array() === $batch ) {
				if ( array() === $in_flight ) {
					return;
				}
				$this->await_ack( $client, $in_flight, $stats );
				continue;
			}
			if ( count( $in_flight ) >= $depth ) {
				$this->await_ack( $client, $in_flight, $stats );
			}
			$this->send_batch( $client, $batch, $in_flight, $stats );
		}
	}

	/**
	 * The next batch: events held from the last claim, then newly claimed rows, taken while the
	 * message stays under max_batch events and the agent's message limit.
	 *
	 * @param array<int, array{row: array<string, mixed>, json: string}> $held      Encoded events not sent yet; updated.
	 * @param int                                                        $max_batch From the welcome.
	 * @param int                                                        $max_bytes Message limit minus the envelope.
	 * @param int                                                        $lease     Claim lease, seconds.
	 * @param float                                                      $deadline  No more claims after it.
	 * @return array<int, array{row: array<string, mixed>, json: string}> Empty when nothing is left.
	 */
	private function next_batch( array &$held, int $max_batch, int $max_bytes, int $lease, float $deadline ): array {
		// Rows that cannot go now (a payload that cannot be built, an event over the message
		// limit) stay claimed until the tick ends: claim past them, so a run of them at the head
		// of the outbox never holds up the rows behind it.
		do {
			$claimed = count( $held ) < $max_batch ? $this->claim( $held, $max_batch - count( $held ), $max_bytes, $lease ) : 0;
		} while ( $claimed > 0 && array() === $held && $this->now() < $deadline );
		return self::take_batch( $held, $max_batch, $max_bytes );
	}

	/**
	 * Claims up to $limit rows, builds their payloads together (WooBrevo_Payloads::build_many())
	 * and appends the encoded events to $held. A row whose payload cannot be built, or whose
	 * event is over the message limit, stays claimed until the tick ends, then waits in the outbox.
	 *
	 * @param array<int, array{row: array<string, mixed>, json: string}> $held      Encoded events not sent yet; updated.
	 * @param int                                                        $limit     Most rows to claim.
	 * @param int                                                        $max_bytes Message limit minus the envelope.
	 * @param int                                                        $lease     Claim lease, seconds.
	 * @return int Rows claimed.
	 */
	private function claim( array &$held, int $limit, int $max_bytes, int $lease ): int {
		$rows = $this->outbox->claim( $this->owner, $limit, $lease );
		if ( array() === $rows ) {
			return 0;
		}
		// A tick claims again and again while other requests write rows; without a persistent
		// object cache this process would build their payloads from what it read at its first
		// claim (tests/chaos: stale statuses, names and prices shipped, the newer rows deleted).
		self::flush_runtime_cache();
		$payloads = $this->build_payloads( $rows );
		foreach ( $rows as $key => $row ) {
			$encoded = $this->encode_event( $row, $payloads[ $key ] ?? null );
			if ( null === $encoded ) {
				continue; // Stays claimed until the tick ends, then waits in the outbox (or was refused: gone).
			}
			if ( strlen( $encoded ) > $max_bytes ) {
				// Kept in the outbox (released at the end of the tick) and shown to the admin; never dropped.
				$this->row_problem = true;
				WooBrevo_Settings::set(
					'last_error',
					sprintf(
						/* translators: 1: event id, 2: resource (order, product…), 3: object id, 4: the event's size in bytes, 5: the agent's message limit in bytes. */
						__( 'event %1$s (%2$s %3$d) is %4$d bytes, over the agent\'s %5$d-byte message limit; it stays in the outbox', 'woobrevo' ),
						$row['event_id'],
						$row['resource'],
						$row['resource_id'],
						strlen( $encoded ),
						$max_bytes
					)
				);
				continue;
			}
			$held[] = array(
				'row'  => $row,
				'json' => $encoded,
			);
		}
		return count( $rows );
	}

	/**
	 * The payloads of claimed rows, by the rows' keys: the REST body, null when the object
	 * vanished, or the Throwable that says why it could not be built.
	 *
	 * @param array<int, array<string, mixed>> $rows Claimed rows.
	 * @return array<int, array|Throwable|null>
	 */
	private function build_payloads( array $rows ): array {
		/**
		 * Whether the shipper builds a batch's payloads with one REST collection request per
		 * resource (`GET /wc/v3/orders?include=…`) instead of one request per event.
		 *
		 * Return false should a site's REST collections misbehave (a plugin that filters them,
		 * say): each payload is then built on its own, as `GET /wc/v3/{resource}s/{id}`.
		 *
		 * @since 0.1.0
		 * @param bool $collections True by default.
		 */
		if ( (bool) apply_filters( 'woobrevo_ship_collection_requests', true ) ) {
			return $this->payloads->build_many( $rows, $this->welcome['watch_meta'] );
		}
		$payloads = array();
		foreach ( $rows as $key => $row ) {
			try {
				$payloads[ $key ] = $this->payloads->build( $row, $this->welcome['watch_meta'] );
			} catch ( Throwable $e ) {
				$payloads[ $key ] = $e;
			}
		}
		return $payloads;
	}

	/**
	 * Takes held events, oldest first, while the message stays under max_batch events and the
	 * agent's message limit.
	 *
	 * @param array<int, array{row: array<string, mixed>, json: string}> $held      Encoded events not sent yet; updated.
	 * @param int                                                        $max_batch From the welcome.
	 * @param int                                                        $max_bytes Message limit minus the envelope.
	 * @return array<int, array{row: array<string, mixed>, json: string}>
	 */
	private static function take_batch( array &$held, int $max_batch, int $max_bytes ): array {
		$batch = array();
		$size  = 0;
		while ( array() !== $held && count( $batch ) < $max_batch && $size + strlen( $held[0]['json'] ) + 1 <= $max_bytes ) {
			$item    = array_shift( $held );
			$size   += strlen( $item['json'] ) + 1;
			$batch[] = $item;
		}
		return $batch;
	}

	/**
	 * Sends one events message; its rows join the batches in flight.
	 *
	 * @param WooBrevo_Ws_Client                                         $client    Open client.
	 * @param array<int, array{row: array<string, mixed>, json: string}> $batch     Encoded events.
	 * @param array<string, array<string, array<string, mixed>>>         $in_flight Batches awaiting their ack; updated.
	 * @param array<string, mixed>                                       $stats     Counters, updated.
	 */
	private function send_batch( WooBrevo_Ws_Client $client, array $batch, array &$in_flight, array &$stats ): void {
		++$this->batch_seq;
		$batch_id = sprintf( 'b-%d-%s-%d', time(), substr( $this->owner, -12 ), $this->batch_seq );
		$rows     = array();
		$parts    = array();
		foreach ( $batch as $item ) {
			$rows[ $item['row']['event_id'] ] = $item['row'];
			$parts[]                          = $item['json'];
		}
		// The events are encoded once each; the envelope is put around them as text.
		$client->send_text( WooBrevo_Protocol::events( $batch_id, $parts ) );
		$in_flight[ $batch_id ] = $rows;
		$stats['sent']         += count( $batch );
		++$stats['batches'];
	}

	/**
	 * Waits for the ack of the oldest batch in flight (acks come in the order of the batches),
	 * deletes the acked rows, records the rejected ones. An ack of another batch in flight that
	 * arrives first is handled the same way; an ack of no batch in flight is ignored.
	 *
	 * @param WooBrevo_Ws_Client                                 $client    Open client.
	 * @param array<string, array<string, array<string, mixed>>> $in_flight Batches awaiting their ack; updated.
	 * @param array<string, mixed>                               $stats     Counters, updated.
	 * @throws RuntimeException When no ack comes in time (the rows stay and are resent later).
	 */
	private function await_ack( WooBrevo_Ws_Client $client, array &$in_flight, array &$stats ): void {
		$oldest       = (string) array_key_first( $in_flight );
		$ack_deadline = $this->now() + self::ACK_TIMEOUT;
		do {
			$message = $this->receive_message( $client, $ack_deadline, 'ack' );
			$batch   = 'ack' === $message['type'] ? $message['batch'] : null;
			if ( null === $batch || ! isset( $in_flight[ $batch ] ) ) {
				continue;
			}
			$rows = $in_flight[ $batch ];
			unset( $in_flight[ $batch ] );
			$this->apply_ack( $message, $rows, $stats );
		} while ( isset( $in_flight[ $oldest ] ) );
	}

	/**
	 * Deletes the outbox rows an ack names (accepted and rejected alike) and records the
	 * rejected ones where the admin sees them; ids of other batches are ignored.
	 *
	 * @param array<string, mixed>                $ack   An ack from WooBrevo_Protocol::parse().
	 * @param array<string, array<string, mixed>> $rows  The acked batch's rows by event id.
	 * @param array<string, mixed>                $stats Counters, updated.
	 */
	private function apply_ack( array $ack, array $rows, array &$stats ): void {
		$done = array();
		foreach ( $ack['accepted'] as $id ) {
			if ( isset( $rows[ $id ] ) ) {
				$done[] = (int) $rows[ $id ]['id'];
				++$stats['acked'];
			}
		}
		foreach ( $ack['rejected'] as $rejected ) {
			if ( isset( $rows[ $rejected['id'] ] ) ) {
				// The agent keeps it as a dead letter; the admin sees it here.
				$this->outbox->record_rejected( $rows[ $rejected['id'] ], $rejected['code'], $rejected['message'] );
				$done[] = (int) $rows[ $rejected['id'] ]['id'];
				++$stats['rejected'];
			}
		}
		if ( array() !== $done ) {
			$this->outbox->delete( $done );
		}
		WooBrevo_Settings::set( 'last_ack', time() );
	}

	/**
	 * Encodes one outbox row as an event (protocol "events") around its payload, built at ship time.
	 *
	 * An event the agent could not store as it is (WooBrevo_Protocol::event_if_encodable(): a
	 * meta value nested deeper than 64 levels, a NAN) is sent with those values replaced
	 * (WooBrevo_Protocol::contained()), and the status panel lists what was replaced; should
	 * even that fail to encode, the row is refused here, listed with the agent's rejections,
	 * and deleted. Either way it never holds up the rows behind it, nor breaks its batch.
	 *
	 * @param array<string, mixed>  $row     Claimed row.
	 * @param array|Throwable|null $payload From WooBrevo_Payloads: the body, null when the object
	 *                                      vanished (shipped as deleted), or why it could not be built.
	 * @return string|null JSON, or null when the payload could not be built (the row stays) or
	 *                     the row was refused (it is gone).
	 */
	private function encode_event( array $row, $payload ): ?string {
		$topic = (string) $row['topic'];
		if ( $payload instanceof Throwable ) {
			$this->row_problem = true;
			/* translators: 1: event id, 2: why the payload could not be built. */
			WooBrevo_Settings::set( 'last_error', sprintf( __( 'cannot build the payload of event %1$s: %2$s', 'woobrevo' ), $row['event_id'], $payload->getMessage() ) );
			return null;
		}
		if ( null === $payload ) {
			// The object is gone since the hook fired: ship it as deleted.
			$payload = WooBrevo_Protocol::deleted_payload( (int) $row['resource_id'], isset( $row['extra']['parent_id'] ) ? (int) $row['extra']['parent_id'] : null );
			$topic   = $row['resource'] . '.deleted';
		}
		// A privacy row's extra is its payload (WooBrevo_Privacy), not the event's `extra`.
		$extra = 'privacy' !== $row['resource'] && ! empty( $row['extra'] ) && is_array( $row['extra'] ) ? $row['extra'] : null;
		try {
			$json = self::event_json( $row, $topic, $payload, $extra );
			if ( null !== $json ) {
				return $json;
			}
			list( $payload, $problems ) = WooBrevo_Protocol::contained( $payload );
			list( $extra, $more )       = WooBrevo_Protocol::contained( $extra, WooBrevo_Protocol::MAX_DEPTH, 'extra' );
			$problems                   = array_merge( $problems, $more );
			$json                       = self::event_json( $row, $topic, $payload, is_array( $extra ) ? $extra : null );
			$why                        = null === $json ? json_last_error_msg() : '';
		} catch ( Throwable $e ) { // A JsonSerializable that throws would throw every time.
			$json = null;
			$why  = $e->getMessage();
		}
		if ( null !== $json ) {
			$this->outbox->record_trimmed( $row, $problems );
			return $json;
		}
		/* translators: %s: what json_encode() or the payload said. */
		$this->outbox->record_rejected( $row, 'unencodable', sprintf( __( 'refused by the plugin: the event cannot be encoded as JSON (%s)', 'woobrevo' ), $why ) );
		$this->outbox->delete( array( (int) $row['id'] ) );
		return null;
	}

	/**
	 * WooBrevo_Protocol::event_if_encodable() for a claimed row.
	 *
	 * @param array<string, mixed>      $row     Claimed row.
	 * @param string                    $topic   The event's topic.
	 * @param mixed                     $payload The payload.
	 * @param array<string, mixed>|null $extra   The event's extra.
	 * @return string|null
	 */
	private static function event_json( array $row, string $topic, $payload, ?array $extra ): ?string {
		return WooBrevo_Protocol::event_if_encodable( (string) $row['event_id'], $topic, (string) $row['resource'], (int) $row['resource_id'], (string) $row['occurred_at'], $payload, $extra );
	}

	/**
	 * Receives and decodes the next protocol message; an `error` message is thrown.
	 *
	 * @param WooBrevo_Ws_Client $client   Open client.
	 * @param float              $deadline Time limit.
	 * @param string             $waiting  What we wait for (for the message).
	 * @return array<string, mixed>
	 * @throws RuntimeException On timeout, an error message or a non-JSON message.
	 */
	private function receive_message( WooBrevo_Ws_Client $client, float $deadline, string $waiting ): array {
		$text = $client->receive( max( 0.0, $deadline - $this->now() ) );
		if ( null === $text ) {
			/* translators: %s: the protocol message waited for, "welcome" or "ack". */
			throw new RuntimeException( sprintf( __( 'no %s from the agent in time', 'woobrevo' ), $waiting ), WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
		}
		return $this->parse_message( $text );
	}

	/**
	 * Parses a message (WooBrevo_Protocol::parse()); an `error` from the agent is thrown.
	 *
	 * @param string $text Message.
	 * @return array<string, mixed>
	 * @throws RuntimeException On an error message or something that is not a protocol message.
	 */
	private function parse_message( string $text ): array {
		$message = WooBrevo_Protocol::parse( $text );
		if ( 'error' === $message['type'] ) {
			// Protocol: a 1008 error is a bug on one side; the admin sees the agent's message.
			/* translators: 1: the agent's error code, 2: the agent's message. */
			throw new RuntimeException( sprintf( __( 'the agent reported %1$s: %2$s', 'woobrevo' ), $message['code'], $message['message'] ), WooBrevo_Ws_Frame::CLOSE_POLICY );
		}
		return $message;
	}

	/**
	 * Records a successful exchange: clears the backoff and the error (not a row's problem this tick noted).
	 */
	private function on_success(): void {
		self::reset_backoff();
		WooBrevo_Settings::set( 'connected', time() );
		if ( ! $this->row_problem && '' !== (string) WooBrevo_Settings::get( 'last_error' ) ) {
			WooBrevo_Settings::set( 'last_error', '' );
		}
	}

	/**
	 * Records a failure: the error for the admin, the next backoff, and closes the client.
	 *
	 * @param Throwable               $e      What went wrong.
	 * @param WooBrevo_Ws_Client|null $client The client, if one was made.
	 * @return string The error message.
	 */
	private function on_failure( Throwable $e, ?WooBrevo_Ws_Client $client ): string {
		$message = $e->getMessage();
		$fails   = $this->backoff()['failures'] + 1;
		self::store_backoff( $fails, time() + self::failure_delay( $fails, (int) $e->getCode(), null !== $client ? $client->retry_after() : null ) );
		WooBrevo_Settings::set( 'connected', 0 );
		WooBrevo_Settings::set( 'last_error', $message );
		if ( null !== $client ) {
			$client->close( WooBrevo_Ws_Frame::CLOSE_NORMAL, '', 0.5 ); // A no-op when already closed.
		}
		return $message;
	}

	/**
	 * Seconds to wait after failure number $fails: the jittered backoff; the maximum after a
	 * refused token (protocol: "retry no sooner than the backoff maximum", the token has to
	 * change first); at least the agent's Retry-After (up to an hour) after a 429 or 503.
	 *
	 * @param int      $fails       Consecutive failures, this one included.
	 * @param int      $code        The failure's code (an HTTP status, a close code…).
	 * @param int|null $retry_after The agent's Retry-After, seconds, if it sent one.
	 * @return int
	 */
	private static function failure_delay( int $fails, int $code, ?int $retry_after ): int {
		$delay = self::backoff_delay( $fails, mt_rand() / mt_getrandmax() );
		if ( 401 === $code || 403 === $code ) {
			return self::MAX_BACKOFF;
		}
		if ( null !== $retry_after ) {
			return max( $delay, min( 3600, $retry_after ) );
		}
		return $delay;
	}

	/**
	 * Stores the current site's backoff.
	 *
	 * @param int $fails Consecutive failures.
	 * @param int $until No attempt before this unix time.
	 */
	private static function store_backoff( int $fails, int $until ): void {
		update_option( self::BACKOFF_STEP_OPTION, $fails, false );
		update_option( self::BACKOFF_UNTIL_OPTION, $until );
	}

	/**
	 * Ends the current site's backoff: after a success, and when its agent URL or token changes
	 * (the next tick tries at once).
	 *
	 * @return void
	 */
	public static function reset_backoff(): void {
		if ( 0 !== (int) get_option( self::BACKOFF_STEP_OPTION, 0 ) || 0 !== (int) get_option( self::BACKOFF_UNTIL_OPTION, 0 ) ) {
			update_option( self::BACKOFF_STEP_OPTION, 0, false );
			update_option( self::BACKOFF_UNTIL_OPTION, 0 ); // Same autoload as on failure: a mixed flag leaves WordPress's alloptions cache stale.
		}
	}

	/**
	 * The stored backoff state of the current site.
	 *
	 * @return array{failures: int, until: int, reason: string}
	 */
	public function backoff(): array {
		return array(
			'failures' => (int) get_option( self::BACKOFF_STEP_OPTION, 0 ),
			'until'    => (int) get_option( self::BACKOFF_UNTIL_OPTION, 0 ),
			'reason'   => (string) WooBrevo_Settings::get( 'last_error' ),
		);
	}

	/**
	 * Takes the per-site named lock without waiting.
	 *
	 * @return bool
	 */
	private function acquire_lock(): bool {
		global $wpdb;
		if ( null !== $this->lock ) {
			return true;
		}
		// Lock names are global to the database server: name the database and table prefix
		// too, so two WordPress installs on one server (or the test suites) do not collide.
		$name = sprintf( 'woobrevo_ship_%s_%d', substr( md5( DB_NAME . '|' . $wpdb->base_prefix ), 0, 10 ), get_current_blog_id() );
		$got  = $wpdb->get_var( $wpdb->prepare( 'SELECT GET_LOCK(%s, 0)', $name ) );
		if ( '1' !== (string) $got ) {
			return false;
		}
		$this->lock = $name;
		return true;
	}

	/**
	 * Releases the named lock.
	 */
	private function release_lock(): void {
		global $wpdb;
		if ( null !== $this->lock ) {
			$wpdb->query( $wpdb->prepare( 'SELECT RELEASE_LOCK(%s)', $this->lock ) );
			$this->lock = null;
		}
	}

	/**
	 * Current time.
	 *
	 * @return float
	 */
	private function now(): float {
		return ( $this->clock )();
	}

	/**
	 * Sleeps until a time (stream mode only).
	 *
	 * @param float $until microtime(true) value.
	 */
	private function sleep_until( float $until ): void {
		$left = $until - $this->now();
		if ( $left > 0 ) {
			usleep( (int) ( min( $left, 60.0 ) * 1e6 ) );
		}
	}
}
