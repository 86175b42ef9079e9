<?php
/**
 * The registry of the plugin's option and transient names: every reader and writer names an
 * option by one of these constants, and uninstall deletes exactly ALL (a unit test keeps
 * `'woobrevo_…'` option literals out of the other files).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Option names (per site; the plugin stores no network option).
 */
final class WooBrevo_Options {

	/** Installed schema version (WooBrevo_Schema::VERSION). */
	public const SCHEMA_VERSION = 'woobrevo_schema_version';

	/** Random prefix of event ids, created with the outbox table (docs/protocol.md, `events`). */
	public const OUTBOX_EPOCH = 'woobrevo_outbox_epoch';

	/** Settings an administrator writes. */
	public const AGENT_URL    = 'woobrevo_agent_url';
	public const TOKEN        = 'woobrevo_token';
	public const PAYLOAD_USER = 'woobrevo_payload_user';
	public const TLS_VERIFY   = 'woobrevo_tls_verify';
	public const CA_FILE      = 'woobrevo_ca_file';

	/** Cached from the agent's last `welcome`. */
	public const WATCH_META        = 'woobrevo_watch_meta';
	public const MAX_BATCH         = 'woobrevo_max_batch';
	public const MAX_MESSAGE_BYTES = 'woobrevo_max_message_bytes';

	/** Abandoned carts: the guest capture setting, the welcome's `carts` field, the restore links' HMAC secret. */
	public const GUEST_CARTS        = 'woobrevo_guest_carts';
	public const CARTS_ENABLED      = 'woobrevo_carts_enabled';
	public const CART_LINK_LIFETIME = 'woobrevo_cart_link_lifetime';
	public const CART_SECRET        = 'woobrevo_cart_secret';

	/** The site's cart figures from the agent's last welcome that carried them, and when (not autoloaded). */
	public const CART_FIGURES = 'woobrevo_cart_figures';

	/** Opt-in: the box on or off, its text, the forms that show it; the welcome's `consent.mode`. */
	public const OPTIN_ENABLED = 'woobrevo_optin_enabled';
	public const OPTIN_LABEL   = 'woobrevo_optin_label';
	public const OPTIN_FORMS   = 'woobrevo_optin_forms';
	public const CONSENT_MODE  = 'woobrevo_consent_mode';

	/** The last erasure id sent (`privacy.erase` payload id; WooBrevo_Privacy). */
	public const ERASURE_SEQ = 'woobrevo_erasure_seq';

	/** Connection state for the status panel. */
	public const LAST_ACK   = 'woobrevo_last_ack';
	public const LAST_ERROR = 'woobrevo_last_error';
	public const CONNECTED  = 'woobrevo_connected';
	public const LAST_TICK  = 'woobrevo_last_tick';

	/** Events the agent rejected (a capped list, not autoloaded). */
	public const REJECTED = 'woobrevo_rejected';

	/** Events the shipper sent with values replaced, and why (a capped list, not autoloaded). */
	public const TRIMMED = 'woobrevo_trimmed';

	/** The shipper's backoff: consecutive failures, and no attempt before this unix time. */
	public const BACKOFF_STEP  = 'woobrevo_backoff_step';
	public const BACKOFF_UNTIL = 'woobrevo_backoff_until';

	/** Transient: the outbox depth, cached for a minute for the backlog notice. */
	public const DEPTH_TRANSIENT = 'woobrevo_depth';

	/** Transient prefix (+ user id): a one-shot notice for the next settings screen. */
	public const NOTICE_TRANSIENT_PREFIX = 'woobrevo_notice_';

	/** Every per-site option above (removed on uninstall). */
	public const ALL = array(
		self::SCHEMA_VERSION,
		self::OUTBOX_EPOCH,
		self::AGENT_URL,
		self::TOKEN,
		self::PAYLOAD_USER,
		self::TLS_VERIFY,
		self::CA_FILE,
		self::WATCH_META,
		self::LAST_ACK,
		self::LAST_ERROR,
		self::CONNECTED,
		self::REJECTED,
		self::TRIMMED,
		self::LAST_TICK,
		self::BACKOFF_UNTIL,
		self::BACKOFF_STEP,
		self::MAX_BATCH,
		self::MAX_MESSAGE_BYTES,
		self::GUEST_CARTS,
		self::CARTS_ENABLED,
		self::CART_LINK_LIFETIME,
		self::CART_SECRET,
		self::CART_FIGURES,
		self::ERASURE_SEQ,
		self::OPTIN_ENABLED,
		self::OPTIN_LABEL,
		self::OPTIN_FORMS,
		self::CONSENT_MODE,
	);

	/** Every transient with a fixed name (removed on uninstall; notices expire within a minute). */
	public const TRANSIENTS = array( self::DEPTH_TRANSIENT );

	/** Options whose change makes the site reconnect at once. */
	public const CONNECTION = array( self::AGENT_URL, self::TOKEN, self::TLS_VERIFY, self::CA_FILE );
}
