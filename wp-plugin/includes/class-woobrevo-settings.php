<?php
/**
 * Settings: the options (one accessor for code, CLI and the screen), the settings screen with
 * "Test connection" and the status panel, and the backlog warning.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Options and the WooCommerce → WooBrevo settings screen.
 */
final class WooBrevo_Settings {

	/** Who may see the screen and change the settings other than the connection's. */
	public const CAPABILITY = 'manage_woocommerce';

	/**
	 * Who may change the connection (agent URL, token, TLS verification, CA file): an
	 * administrator. A shop manager (manage_woocommerce only) could otherwise point the stored
	 * token at a server of their own and read it there.
	 */
	public const CONNECTION_CAPABILITY = 'manage_options';

	/** Screen slug. */
	public const PAGE = 'woobrevo';

	/** The agent's stream path (docs/protocol.md, "Connection"). */
	public const STREAM_PATH = '/v1/stream';

	/** Options whose change makes the site reconnect at once: a fixed URL or token must not wait out the backoff. */
	private const CONNECTION_OPTIONS = WooBrevo_Options::CONNECTION;

	/** Refusals of the upgrade that say nothing answers at the URL's path (Test connection looks for the right URL). */
	private const WRONG_PATH_STATUSES = array( 404, 405, 410 );

	/** Option names and defaults by key. */
	private const OPTIONS = array(
		'agent_url'         => array( WooBrevo_Options::AGENT_URL, '' ),
		'token'             => array( WooBrevo_Options::TOKEN, '' ),
		'payload_user'      => array( WooBrevo_Options::PAYLOAD_USER, 0 ),
		'tls_verify'        => array( WooBrevo_Options::TLS_VERIFY, '1' ),
		'ca_file'           => array( WooBrevo_Options::CA_FILE, '' ),
		'watch_meta'        => array( WooBrevo_Options::WATCH_META, array() ),
		'last_ack'          => array( WooBrevo_Options::LAST_ACK, 0 ),
		'last_error'        => array( WooBrevo_Options::LAST_ERROR, '' ),
		'connected'         => array( WooBrevo_Options::CONNECTED, 0 ), // Unix time of the last successful tick, 0 when down.
		'max_batch'         => array( WooBrevo_Options::MAX_BATCH, 100 ),
		'max_message_bytes'  => array( WooBrevo_Options::MAX_MESSAGE_BYTES, 8388608 ),
		'guest_carts'        => array( WooBrevo_Options::GUEST_CARTS, '1' ),
		'carts_enabled'      => array( WooBrevo_Options::CARTS_ENABLED, '1' ),
		'cart_link_lifetime' => array( WooBrevo_Options::CART_LINK_LIFETIME, WooBrevo_Protocol::DEFAULT_CART_LINK_LIFETIME ),
		'cart_figures'       => array( WooBrevo_Options::CART_FIGURES, array() ), // {figures, at}: the last welcome's cart figures.
		'optin_enabled'      => array( WooBrevo_Options::OPTIN_ENABLED, '0' ),
		'optin_label'        => array( WooBrevo_Options::OPTIN_LABEL, '' ), // Empty: WooBrevo_Consent::label()'s default.
		'optin_forms'        => array( WooBrevo_Options::OPTIN_FORMS, WooBrevo_Consent::FORMS ),
		'consent_mode'       => array( WooBrevo_Options::CONSENT_MODE, '' ), // The last welcome's consent.mode; '' before the first welcome.
	);

	/** Settings kept out of WordPress's autoloaded options (read only on the settings screen, or secret). */
	private const NOT_AUTOLOADED = array( 'token', 'cart_figures' );

	/** Why the last save_from_request() was refused, for the notice (null: saved, or refused for capability or nonce). */
	private ?string $refusal = null;

	/**
	 * Sites (blog ids) whose connection settings changed in this request; shipped at `shutdown`.
	 *
	 * @var array<int, true>
	 */
	private static array $changed_sites = array();

	/**
	 * Reads a setting of the current site.
	 *
	 * @param string $key One of agent_url, token, payload_user, tls_verify, ca_file, watch_meta, last_ack, last_error, connected, max_batch, max_message_bytes, guest_carts, carts_enabled, cart_link_lifetime, cart_figures, optin_enabled, optin_label, optin_forms, consent_mode.
	 * @return mixed
	 * @throws InvalidArgumentException For an unknown key.
	 */
	public static function get( string $key ): mixed {
		if ( ! isset( self::OPTIONS[ $key ] ) ) {
			throw new InvalidArgumentException( 'unknown woobrevo setting: ' . $key );
		}
		list( $option, $default ) = self::OPTIONS[ $key ];
		$value                    = get_option( $option, $default );
		if ( is_array( $default ) ) {
			return is_array( $value ) ? $value : $default;
		}
		if ( is_int( $default ) ) {
			return (int) $value;
		}
		return (string) $value;
	}

	/**
	 * Writes a setting of the current site (the token and the cart figures are not autoloaded).
	 *
	 * @param string $key   Setting key.
	 * @param mixed  $value Value.
	 * @return void
	 * @throws InvalidArgumentException For an unknown key.
	 */
	public static function set( string $key, mixed $value ): void {
		if ( ! isset( self::OPTIONS[ $key ] ) ) {
			throw new InvalidArgumentException( 'unknown woobrevo setting: ' . $key );
		}
		update_option( self::OPTIONS[ $key ][0], $value, in_array( $key, self::NOT_AUTOLOADED, true ) ? false : null );
	}

	/**
	 * What the screen may show of the token: its last 4 characters, never more.
	 *
	 * @param string $token Token.
	 * @return string
	 */
	public static function token_hint( string $token ): string {
		return '' === $token ? '' : '…' . substr( $token, -4 );
	}

	/**
	 * Whether a token is stored, as the network screen and `wp woobrevo status` show it.
	 *
	 * @param string $token Stored token.
	 * @return string
	 */
	public static function token_state( string $token ): string {
		if ( '' === $token ) {
			return __( 'not set', 'woobrevo' );
		}
		/* translators: %s: the last characters of the stored token, e.g. "…a1b2". */
		return sprintf( __( 'set (%s)', 'woobrevo' ), self::token_hint( $token ) );
	}

	/**
	 * An agent URL as stored: a ws:// or wss:// URL with no path (or only "/") gets the stream
	 * path; any other path is kept (behind a reverse proxy it can be /woobrevo/v1/stream).
	 *
	 * @param string $url Agent URL.
	 * @return string
	 */
	public static function stream_url( string $url ): string {
		return (string) preg_replace( '#^(wss?://[^/?\#]+)/?(?=[?\#]|$)#i', '$1' . self::STREAM_PATH, trim( $url ) );
	}

	/**
	 * Where the stream may be when the agent URL's path is refused, most likely first: the
	 * path's own prefix with the stream path (a reverse proxy's /woobrevo/ → /woobrevo/v1/stream,
	 * a trailing slash dropped), then the stream path at the host and port.
	 *
	 * @param string $url Agent URL.
	 * @return string[] Never $url itself.
	 */
	public static function stream_url_candidates( string $url ): array {
		$parts = wp_parse_url( trim( $url ) );
		if ( ! is_array( $parts ) || empty( $parts['scheme'] ) || empty( $parts['host'] ) ) {
			return array();
		}
		$origin = strtolower( (string) $parts['scheme'] ) . '://' . $parts['host'] . ( isset( $parts['port'] ) ? ':' . (int) $parts['port'] : '' );
		$query  = isset( $parts['query'] ) ? '?' . $parts['query'] : '';
		$path   = rtrim( (string) ( $parts['path'] ?? '' ), '/' );
		$urls   = array();
		if ( '' !== $path ) {
			$urls[] = $origin . ( str_ends_with( $path, self::STREAM_PATH ) ? $path : $path . self::STREAM_PATH ) . $query;
		}
		$urls[] = $origin . self::STREAM_PATH . $query;
		return array_values( array_diff( array_unique( $urls ), array( trim( $url ) ) ) );
	}

	/**
	 * An agent URL's scheme, host and port ("wss://agent.example:443"; the port defaulted by the
	 * scheme), or '' for no URL: two URLs with the same origin reach the same server.
	 *
	 * @param string $url Agent URL.
	 * @return string
	 */
	public static function agent_origin( string $url ): string {
		$parts = wp_parse_url( trim( $url ) );
		if ( ! is_array( $parts ) || empty( $parts['scheme'] ) || empty( $parts['host'] ) ) {
			return '' === trim( $url ) ? '' : 'invalid:' . trim( $url );
		}
		$scheme = strtolower( (string) $parts['scheme'] );
		$port   = isset( $parts['port'] ) ? (int) $parts['port'] : ( in_array( $scheme, array( 'wss', 'https' ), true ) ? 443 : 80 );
		return $scheme . '://' . strtolower( (string) $parts['host'] ) . ':' . $port;
	}

	/**
	 * Whether a host is this machine's loopback (localhost, 127.0.0.0/8, ::1): what crosses no network.
	 *
	 * @param string $host Host of a URL (an IPv6 address in brackets or not).
	 * @return bool
	 */
	public static function is_loopback_host( string $host ): bool {
		$host = strtolower( trim( $host, '[]' ) );
		if ( 'localhost' === $host || str_ends_with( $host, '.localhost' ) ) {
			return true;
		}
		if ( false !== filter_var( $host, FILTER_VALIDATE_IP, FILTER_FLAG_IPV4 ) ) {
			return str_starts_with( $host, '127.' );
		}
		return false !== filter_var( $host, FILTER_VALIDATE_IP, FILTER_FLAG_IPV6 ) && inet_pton( $host ) === inet_pton( '::1' );
	}

	/**
	 * What is unsafe about a connection's settings, one sentence each: a ws:// URL to another
	 * machine (the token and every event travel in clear), a wss:// one without certificate
	 * verification (anyone on the path can pose as the agent). A ws:// URL has no certificate
	 * to verify, so the second is not said of it.
	 *
	 * @param string $url        Agent URL.
	 * @param string $tls_verify '1' when the agent's certificate is verified.
	 * @return string[]
	 */
	public static function connection_warnings( string $url, string $tls_verify ): array {
		$parts    = wp_parse_url( trim( $url ) );
		$scheme   = is_array( $parts ) ? strtolower( (string) ( $parts['scheme'] ?? '' ) ) : '';
		$host     = is_array( $parts ) ? (string) ( $parts['host'] ?? '' ) : '';
		$warnings = array();
		if ( 'ws' === $scheme && '' !== $host && ! self::is_loopback_host( $host ) ) {
			/* translators: %s: the agent's host. */
			$warnings[] = sprintf( __( "The agent URL is ws:// to %s, another machine: the site token and every event (names, e-mail addresses, orders) cross the network unencrypted. Use a wss:// URL (the agent's own TLS, or a reverse proxy with TLS).", 'woobrevo' ), $host );
		}
		if ( '1' !== $tls_verify && 'ws' !== $scheme ) {
			$warnings[] = __( 'The agent\'s certificate is not verified: anyone on the network path can pose as the agent and receive the site token and every event. Tick "Verify the agent\'s certificate"; for a self-signed or private certificate, give its CA in "CA file" instead.', 'woobrevo' );
		}
		return $warnings;
	}

	/**
	 * The status panel's "Connection security" line when nothing is unsafe.
	 *
	 * @param string $url Agent URL.
	 * @return string
	 */
	private static function security_text( string $url ): string {
		$parts = wp_parse_url( trim( $url ) );
		if ( ! is_array( $parts ) || empty( $parts['host'] ) ) {
			return __( 'no agent URL set', 'woobrevo' );
		}
		if ( 'ws' === strtolower( (string) ( $parts['scheme'] ?? '' ) ) ) {
			return __( 'unencrypted, on this machine only (loopback)', 'woobrevo' );
		}
		return __( "encrypted (wss://), the agent's certificate verified", 'woobrevo' );
	}

	/**
	 * Stores every agent URL, whatever writes it (the screen, `wp option update`), through stream_url().
	 *
	 * @param mixed $value The value being saved.
	 * @return mixed
	 */
	public function filter_sanitize_option_woobrevo_agent_url( $value ) {
		return is_string( $value ) ? self::stream_url( $value ) : $value;
	}

	/**
	 * A connection setting was created (the first save, or `wp option update` of a missing option).
	 *
	 * @param string $option Option name.
	 * @return void
	 */
	public function action_added_option( $option ): void {
		if ( in_array( $option, self::CONNECTION_OPTIONS, true ) ) {
			self::connection_changed();
		}
	}

	/**
	 * A connection setting changed (WordPress fires this only when the value differs), by any path.
	 *
	 * @param string $option Option name.
	 * @return void
	 */
	public function action_updated_option( $option ): void {
		if ( in_array( $option, self::CONNECTION_OPTIONS, true ) ) {
			self::connection_changed();
		}
	}

	/**
	 * The current site's agent URL, token or TLS settings changed: its backoff ends, the last
	 * error (about the old settings) goes, and the site ships at the end of this request.
	 *
	 * @return void
	 */
	private static function connection_changed(): void {
		WooBrevo_Shipper::reset_backoff();
		if ( '' !== (string) self::get( 'last_error' ) ) {
			self::set( 'last_error', '' );
		}
		self::$changed_sites[ get_current_blog_id() ] = true;
	}

	/**
	 * The sites whose connection settings changed in this request, forgotten once returned.
	 *
	 * @return int[] Blog ids.
	 */
	public static function take_changed_sites(): array {
		$sites               = array_keys( self::$changed_sites );
		self::$changed_sites = array();
		return $sites;
	}

	/**
	 * Adds the screen under WooCommerce (or Settings when WooCommerce has no menu).
	 *
	 * @return void
	 */
	public function action_admin_menu(): void {
		global $admin_page_hooks;
		// WooCommerce adds its menu at priority 9.
		if ( isset( $admin_page_hooks['woocommerce'] ) ) {
			add_submenu_page( 'woocommerce', 'WooBrevo', 'WooBrevo', self::CAPABILITY, self::PAGE, array( $this, 'render' ) );
		} else {
			add_options_page( 'WooBrevo', 'WooBrevo', self::CAPABILITY, self::PAGE, array( $this, 'render' ) );
		}
	}

	/**
	 * The settings form and the status panel.
	 *
	 * @return void
	 */
	public function render(): void {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to manage WooBrevo.', 'woobrevo' ), 403 );
		}
		$outbox   = new WooBrevo_Outbox();
		$token    = (string) self::get( 'token' );
		$last_ack = (int) self::get( 'last_ack' );
		$notice   = get_transient( WooBrevo_Options::NOTICE_TRANSIENT_PREFIX . get_current_user_id() );
		$warnings = self::connection_warnings( (string) self::get( 'agent_url' ), (string) self::get( 'tls_verify' ) );
		$locked   = ! current_user_can( self::CONNECTION_CAPABILITY ); // A shop manager: the connection is read-only.
		?>
		<div class="wrap woobrevo-settings">
			<h1>WooBrevo</h1>
			<?php if ( is_array( $notice ) ) : ?>
				<?php delete_transient( WooBrevo_Options::NOTICE_TRANSIENT_PREFIX . get_current_user_id() ); ?>
				<div class="notice notice-<?php echo esc_attr( $notice['type'] ); ?> woobrevo-notice" role="<?php echo esc_attr( 'error' === $notice['type'] ? 'alert' : 'status' ); ?>"><p><?php echo esc_html( $notice['message'] ); ?></p></div>
			<?php endif; ?>
			<?php foreach ( $warnings as $warning ) : ?>
				<div class="notice notice-warning woobrevo-security-warning" role="alert"><p><?php echo esc_html( $warning ); ?></p></div>
			<?php endforeach; ?>
			<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>">
				<input type="hidden" name="action" value="woobrevo_save" />
				<?php wp_nonce_field( 'woobrevo_save' ); ?>
				<?php if ( $locked ) : ?>
					<div class="notice notice-info inline woobrevo-connection-locked"><p><?php esc_html_e( 'Only an administrator can change the agent URL, the site token and the TLS settings.', 'woobrevo' ); ?></p></div>
				<?php endif; ?>
				<table class="form-table" role="presentation">
					<tr>
						<th scope="row"><label for="<?php echo esc_attr( WooBrevo_Options::AGENT_URL ); ?>"><?php esc_html_e( 'Agent URL', 'woobrevo' ); ?></label></th>
						<td><input name="<?php echo esc_attr( WooBrevo_Options::AGENT_URL ); ?>" id="<?php echo esc_attr( WooBrevo_Options::AGENT_URL ); ?>" type="url" class="regular-text" value="<?php echo esc_attr( (string) self::get( 'agent_url' ) ); ?>" placeholder="wss://agent.example.com/v1/stream" aria-describedby="woobrevo-agent-url-description" <?php disabled( $locked ); ?> />
							<p class="description" id="woobrevo-agent-url-description"><?php esc_html_e( "The agent's stream address, ws:// or wss:// (a URL without a path gets /v1/stream). A URL with another host, port or scheme needs the site token typed again.", 'woobrevo' ); ?></p></td>
					</tr>
					<tr>
						<th scope="row"><label for="<?php echo esc_attr( WooBrevo_Options::TOKEN ); ?>"><?php esc_html_e( 'Site token', 'woobrevo' ); ?></label></th>
						<td>
							<input name="<?php echo esc_attr( WooBrevo_Options::TOKEN ); ?>" id="<?php echo esc_attr( WooBrevo_Options::TOKEN ); ?>" type="password" class="regular-text" value="" autocomplete="new-password" placeholder="<?php echo esc_attr( self::token_placeholder( $token ) ); ?>" aria-describedby="woobrevo-token-description" <?php disabled( $locked ); ?> />
							<p class="description" id="woobrevo-token-description"><?php echo esc_html( self::token_description( $token ) ); ?></p>
							<?php if ( '' !== $token && ! $locked ) : ?>
								<label><input type="checkbox" name="woobrevo_clear_token" value="1" /> <?php esc_html_e( 'Remove the stored token', 'woobrevo' ); ?></label>
							<?php endif; ?>
						</td>
					</tr>
					<tr>
						<th scope="row"><label for="<?php echo esc_attr( WooBrevo_Options::PAYLOAD_USER ); ?>"><?php esc_html_e( 'Payload user', 'woobrevo' ); ?></label></th>
						<td>
							<?php
							$users = wp_dropdown_users(
								array(
									'name'             => WooBrevo_Options::PAYLOAD_USER,
									'id'               => WooBrevo_Options::PAYLOAD_USER,
									'selected'         => (int) self::get( 'payload_user' ),
									'show_option_none' => __( 'First administrator', 'woobrevo' ),
									'role__in'         => array( 'administrator', 'shop_manager' ),
									'echo'             => false,
								)
							);
							// The help text below describes the list (wp_dropdown_users() takes no ARIA attributes).
							echo wp_kses(
								str_replace( '<select ', '<select aria-describedby="woobrevo-payload-user-description" ', $users ),
								array(
									'select' => array(
										'name'             => true,
										'id'               => true,
										'class'            => true,
										'aria-describedby' => true,
									),
									'option' => array(
										'value'    => true,
										'selected' => true,
									),
								)
							);
							?>
							<p class="description" id="woobrevo-payload-user-description"><?php esc_html_e( 'REST payloads are built as this user; it needs read access to orders, products, coupons and customers.', 'woobrevo' ); ?></p>
						</td>
					</tr>
					<tr>
						<th scope="row"><?php esc_html_e( 'TLS', 'woobrevo' ); ?></th>
						<td>
							<label><input type="checkbox" name="<?php echo esc_attr( WooBrevo_Options::TLS_VERIFY ); ?>" value="1" <?php checked( '1', (string) self::get( 'tls_verify' ) ); ?> <?php disabled( $locked ); ?> /> <?php esc_html_e( "Verify the agent's certificate", 'woobrevo' ); ?></label>
							<p><label for="<?php echo esc_attr( WooBrevo_Options::CA_FILE ); ?>"><?php esc_html_e( 'CA file', 'woobrevo' ); ?></label> <input name="<?php echo esc_attr( WooBrevo_Options::CA_FILE ); ?>" id="<?php echo esc_attr( WooBrevo_Options::CA_FILE ); ?>" type="text" class="regular-text" value="<?php echo esc_attr( (string) self::get( 'ca_file' ) ); ?>" placeholder="/etc/ssl/certs/ca-certificates.crt" <?php disabled( $locked ); ?> /></p>
						</td>
					</tr>
					<tr>
						<th scope="row"><?php esc_html_e( 'Abandoned carts', 'woobrevo' ); ?></th>
						<td>
							<label><input type="checkbox" name="<?php echo esc_attr( WooBrevo_Options::GUEST_CARTS ); ?>" value="1" <?php checked( '1', (string) self::get( 'guest_carts' ) ); ?> aria-describedby="woobrevo-guest-carts-description" /> <?php esc_html_e( 'Capture guest carts', 'woobrevo' ); ?></label>
							<p class="description" id="woobrevo-guest-carts-description"><?php esc_html_e( "A guest's cart is captured once the e-mail address is typed at checkout. Logged-in shoppers' carts are always captured while the agent asks for carts.", 'woobrevo' ); ?></p>
						</td>
					</tr>
					<?php self::render_optin_settings(); ?>
				</table>
				<?php submit_button( __( 'Save settings', 'woobrevo' ), 'primary', 'woobrevo-save' ); ?>
			</form>
			<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>">
				<input type="hidden" name="action" value="woobrevo_test_connection" />
				<?php wp_nonce_field( 'woobrevo_test_connection' ); ?>
				<?php submit_button( __( 'Test connection', 'woobrevo' ), 'secondary', 'woobrevo-test-connection' ); ?>
			</form>
			<h2><?php esc_html_e( 'Status', 'woobrevo' ); ?></h2>
			<table class="widefat striped woobrevo-status">
				<tr><th><?php esc_html_e( 'Connection', 'woobrevo' ); ?></th><td><?php echo esc_html( self::connection_text( (int) self::get( 'connected' ) ) ); ?></td></tr>
				<tr><th><?php esc_html_e( 'Last ack', 'woobrevo' ); ?></th><td><?php echo esc_html( self::time_text( $last_ack ) ); ?></td></tr>
				<tr><th><?php esc_html_e( 'Outbox depth', 'woobrevo' ); ?></th><td><?php echo esc_html( (string) $outbox->depth() ); ?></td></tr>
				<tr><th><?php esc_html_e( 'Last error', 'woobrevo' ); ?></th><td><?php echo esc_html( (string) self::get( 'last_error' ) ); ?></td></tr>
				<tr><th><?php esc_html_e( 'Connection security', 'woobrevo' ); ?></th><td class="woobrevo-connection-security">
					<?php if ( array() !== $warnings ) : ?>
						<strong><?php esc_html_e( 'Unsafe:', 'woobrevo' ); ?></strong> <?php echo esc_html( implode( ' ', $warnings ) ); ?>
					<?php else : ?>
						<?php echo esc_html( self::security_text( (string) self::get( 'agent_url' ) ) ); ?>
					<?php endif; ?>
				</td></tr>
				<tr><th><?php esc_html_e( 'Consent mode', 'woobrevo' ); ?></th><td class="woobrevo-consent-mode"><?php echo esc_html( self::consent_mode_text( WooBrevo_Consent::agent_mode() ) ); ?></td></tr>
			</table>
			<?php self::render_consent_warnings(); ?>
			<h2><?php esc_html_e( 'Abandoned carts', 'woobrevo' ); ?></h2>
			<?php self::render_cart_figures(); ?>
			<h2><?php esc_html_e( 'Rejected events', 'woobrevo' ); ?></h2>
			<?php $rejected = $outbox->rejected( 50 ); ?>
			<?php if ( ! $rejected ) : ?>
				<p><?php esc_html_e( 'None.', 'woobrevo' ); ?></p>
			<?php else : ?>
				<table class="widefat striped woobrevo-rejected">
					<thead><tr><th><?php esc_html_e( 'When', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Event', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Object', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Code', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Reason', 'woobrevo' ); ?></th></tr></thead>
					<tbody>
					<?php foreach ( $rejected as $item ) : ?>
						<tr>
							<td><?php echo esc_html( gmdate( 'Y-m-d H:i:s', (int) $item['at'] ) ); ?></td>
							<td><?php echo esc_html( (string) $item['event_id'] ); ?></td>
							<td><?php echo esc_html( $item['topic'] . ' #' . $item['resource_id'] ); ?></td>
							<td><?php echo esc_html( (string) $item['code'] ); ?></td>
							<td><?php echo esc_html( (string) $item['message'] ); ?></td>
						</tr>
					<?php endforeach; ?>
					</tbody>
				</table>
			<?php endif; ?>
			<?php self::render_trimmed( $outbox ); ?>
		</div>
		<?php
	}

	/**
	 * The status panel's events sent with values the agent could not have stored replaced
	 * (WooBrevo_Protocol::contained()); nothing when there are none.
	 *
	 * @param WooBrevo_Outbox $outbox The site's outbox.
	 * @return void
	 */
	private static function render_trimmed( WooBrevo_Outbox $outbox ): void {
		$trimmed = $outbox->trimmed( 50 );
		if ( array() === $trimmed ) {
			return;
		}
		?>
		<h2><?php esc_html_e( 'Events sent with values replaced', 'woobrevo' ); ?></h2>
		<p class="description"><?php esc_html_e( 'These values could not have been stored by the agent (nested too deep, not a number JSON allows); the rest of each event was sent.', 'woobrevo' ); ?></p>
		<table class="widefat striped woobrevo-trimmed">
			<thead><tr><th><?php esc_html_e( 'When', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Event', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Object', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Replaced', 'woobrevo' ); ?></th></tr></thead>
			<tbody>
			<?php foreach ( $trimmed as $item ) : ?>
				<tr>
					<td><?php echo esc_html( gmdate( 'Y-m-d H:i:s', (int) $item['at'] ) ); ?></td>
					<td><?php echo esc_html( (string) $item['event_id'] ); ?></td>
					<td><?php echo esc_html( $item['topic'] . ' #' . $item['resource_id'] ); ?></td>
					<td><?php echo esc_html( (string) $item['message'] ); ?></td>
				</tr>
			<?php endforeach; ?>
			</tbody>
		</table>
		<?php
	}

	/**
	 * The status panel's "Abandoned carts": the figures of the agent's last welcome that
	 * carried them (docs/carts.md, "Seeing it work"), and when they came.
	 *
	 * @return void
	 */
	private static function render_cart_figures(): void {
		$stored  = (array) self::get( 'cart_figures' );
		$figures = is_array( $stored['figures'] ?? null ) ? $stored['figures'] : null;
		if ( '1' !== (string) self::get( 'carts_enabled' ) ) {
			echo '<p class="woobrevo-cart-figures">' . esc_html__( 'The agent has abandoned carts switched off for this site (carts.enabled).', 'woobrevo' ) . '</p>';
			return;
		}
		if ( null === $figures ) {
			echo '<p class="woobrevo-cart-figures">' . esc_html__( 'No figures yet: they come with the next answer from the agent.', 'woobrevo' ) . '</p>';
			return;
		}
		$counts = array(
			'active'    => __( 'Active', 'woobrevo' ),
			'abandoned' => __( 'Abandoned', 'woobrevo' ),
			'recovered' => __( 'Recovered', 'woobrevo' ),
			'expired'   => __( 'Expired', 'woobrevo' ),
		);
		?>
		<table class="widefat striped woobrevo-cart-figures">
			<?php foreach ( $counts as $key => $label ) : ?>
				<tr><th><?php echo esc_html( $label ); ?></th><td><?php echo esc_html( number_format_i18n( (int) ( $figures[ $key ] ?? 0 ) ) ); ?></td></tr>
			<?php endforeach; ?>
			<tr><th><?php esc_html_e( 'Recovered revenue', 'woobrevo' ); ?></th><td><?php echo wp_kses_post( self::money( (float) ( $figures['recovered_revenue'] ?? 0 ) ) ); ?></td></tr>
			<tr><th><?php esc_html_e( 'Recovery rate', 'woobrevo' ); ?></th><td><?php echo esc_html( self::rate_text( $figures['recovery_rate'] ?? null ) ); ?></td></tr>
		</table>
		<p class="description">
			<?php
			/* translators: %s: date and time (UTC) the agent sent these figures, e.g. "2026-12-06 01:25:05 UTC". */
			echo esc_html( sprintf( __( 'As of %s.', 'woobrevo' ), self::time_text( (int) ( $stored['at'] ?? 0 ) ) ) );
			?>
		</p>
		<?php
	}

	/**
	 * The opt-in rows of the settings form: the box on or off, its text, the forms showing it,
	 * and whether the block checkout can show it on this WooCommerce.
	 *
	 * @return void
	 */
	private static function render_optin_settings(): void {
		$forms = array(
			'checkout'     => __( 'Checkout (classic and block)', 'woobrevo' ),
			'registration' => __( 'Registration', 'woobrevo' ),
			'my_account'   => __( 'My Account (account details)', 'woobrevo' ),
		);
		$shown = WooBrevo_Consent::forms();
		?>
		<tr>
			<th scope="row"><?php esc_html_e( 'Marketing opt-in', 'woobrevo' ); ?></th>
			<td>
				<label><input type="checkbox" name="<?php echo esc_attr( WooBrevo_Options::OPTIN_ENABLED ); ?>" value="1" <?php checked( '1', (string) self::get( 'optin_enabled' ) ); ?> aria-describedby="woobrevo-optin-description" /> <?php esc_html_e( 'Show an optional "subscribe" box', 'woobrevo' ); ?></label>
				<p><label for="<?php echo esc_attr( WooBrevo_Options::OPTIN_LABEL ); ?>"><?php esc_html_e( 'Text of the box', 'woobrevo' ); ?></label> <input name="<?php echo esc_attr( WooBrevo_Options::OPTIN_LABEL ); ?>" id="<?php echo esc_attr( WooBrevo_Options::OPTIN_LABEL ); ?>" type="text" class="regular-text" value="<?php echo esc_attr( WooBrevo_Consent::label() ); ?>" /></p>
				<fieldset><legend class="screen-reader-text"><?php esc_html_e( 'Forms that show the box', 'woobrevo' ); ?></legend>
				<?php foreach ( $forms as $form => $text ) : ?>
					<label><input type="checkbox" name="<?php echo esc_attr( WooBrevo_Options::OPTIN_FORMS ); ?>[]" value="<?php echo esc_attr( $form ); ?>" <?php checked( in_array( $form, $shown, true ) ); ?> /> <?php echo esc_html( $text ); ?></label><br />
				<?php endforeach; ?>
				</fieldset>
				<p class="description" id="woobrevo-optin-description"><?php esc_html_e( 'Each choice is kept on the order and the customer with its time, the form and the exact text shown, and sent to the agent. An unticked box at checkout never unsubscribes anyone.', 'woobrevo' ); ?></p>
				<?php if ( ! WooBrevo_Consent::block_checkout_supported() ) : ?>
					<p class="description woobrevo-optin-block-unsupported"><?php echo esc_html( self::block_checkout_unsupported_text() ); ?></p>
				<?php endif; ?>
			</td>
		</tr>
		<?php
	}

	/**
	 * Why the block checkout shows no box on this WooCommerce.
	 *
	 * @return string
	 */
	public static function block_checkout_unsupported_text(): string {
		/* translators: %s: the running WooCommerce version. */
		return sprintf( __( 'The block checkout cannot show the box with WooCommerce %s (its checkout fields API needs WooCommerce 8.9 or newer); the classic checkout, registration and My Account show it.', 'woobrevo' ), defined( 'WC_VERSION' ) ? (string) WC_VERSION : '?' );
	}

	/**
	 * The status panel's consent mode.
	 *
	 * @param string $mode implied, required or '' (not known yet).
	 * @return string
	 */
	private static function consent_mode_text( string $mode ): string {
		switch ( $mode ) {
			case 'required':
				return __( 'required: only people who opted in join marketing lists', 'woobrevo' );
			case 'implied':
				return __( 'implied: every customer joins marketing lists', 'woobrevo' );
		}
		return __( 'not known yet: it comes with the next answer from the agent', 'woobrevo' );
	}

	/**
	 * The status panel's consent warnings: required mode with the box off, and a block
	 * checkout that cannot show the box.
	 *
	 * @return void
	 */
	private static function render_consent_warnings(): void {
		$warning = WooBrevo_Consent::mode_warning();
		if ( '' !== $warning ) {
			echo '<div class="notice notice-warning inline woobrevo-consent-warning"><p>' . esc_html( $warning ) . '</p></div>';
		}
		if ( '1' === (string) self::get( 'optin_enabled' ) && WooBrevo_Consent::enabled_for( 'checkout' ) && ! WooBrevo_Consent::block_checkout_supported() ) {
			echo '<div class="notice notice-info inline woobrevo-optin-block-unsupported"><p>' . esc_html( self::block_checkout_unsupported_text() ) . '</p></div>';
		}
	}

	/**
	 * An amount in the store's currency: WooCommerce's own formatting (HTML), or the number and
	 * the currency code when wc_price() is not there.
	 *
	 * @param float $amount Amount.
	 * @return string HTML.
	 */
	private static function money( float $amount ): string {
		if ( function_exists( 'wc_price' ) ) {
			return (string) wc_price( $amount );
		}
		$currency = function_exists( 'get_woocommerce_currency' ) ? (string) get_woocommerce_currency() : '';
		return esc_html( trim( number_format_i18n( $amount, 2 ) . ' ' . $currency ) );
	}

	/**
	 * The recovery rate as a percentage.
	 *
	 * @param mixed $rate Recovered / abandoned; null before the first abandonment.
	 * @return string
	 */
	private static function rate_text( $rate ): string {
		if ( ! is_int( $rate ) && ! is_float( $rate ) ) {
			return __( 'none abandoned yet', 'woobrevo' );
		}
		/* translators: %s: the recovery rate as a percentage number, e.g. "33.3". */
		return sprintf( __( '%s%%', 'woobrevo' ), number_format_i18n( $rate * 100, 1 ) );
	}

	/**
	 * The token field's placeholder: whether a token is stored, and its last characters.
	 *
	 * @param string $token Stored token.
	 * @return string
	 */
	private static function token_placeholder( string $token ): string {
		if ( '' === $token ) {
			return __( 'not set', 'woobrevo' );
		}
		/* translators: %s: the last characters of the stored token, e.g. "…a1b2". */
		return sprintf( __( 'set, ends in %s', 'woobrevo' ), self::token_hint( $token ) );
	}

	/**
	 * The token field's description.
	 *
	 * @param string $token Stored token.
	 * @return string
	 */
	private static function token_description( string $token ): string {
		if ( '' === $token ) {
			return __( 'No token stored.', 'woobrevo' );
		}
		/* translators: %s: the last characters of the stored token, e.g. "…a1b2". */
		return sprintf( __( 'A token ending in %s is stored; leave empty to keep it.', 'woobrevo' ), self::token_hint( $token ) );
	}

	/**
	 * The status panel's connection line.
	 *
	 * @param int $connected Unix time of the last successful tick, 0 when down.
	 * @return string
	 */
	private static function connection_text( int $connected ): string {
		if ( $connected <= 0 ) {
			return __( 'not connected', 'woobrevo' );
		}
		/* translators: %s: date and time (UTC) of the last successful tick, e.g. 2026-12-06 01:25:05. */
		return sprintf( __( 'connected (last tick %s UTC)', 'woobrevo' ), gmdate( 'Y-m-d H:i:s', $connected ) );
	}

	/**
	 * A unix time as shown in the admin screens (UTC), or "never".
	 *
	 * @param int $time Unix time; 0 for never.
	 * @return string
	 */
	public static function time_text( int $time ): string {
		if ( $time <= 0 ) {
			return __( 'never', 'woobrevo' );
		}
		/* translators: %s: a date and time, e.g. 2026-12-06 01:25:05. */
		return sprintf( __( '%s UTC', 'woobrevo' ), gmdate( 'Y-m-d H:i:s', $time ) );
	}

	/**
	 * Saves the form: capability and nonce first, then sanitized values. Returns false when
	 * refused, having saved nothing; refusal() then says why when it is not the capability or
	 * the nonce (a connection change the user may not make, or a new agent without the token).
	 *
	 * @return bool
	 */
	public function save_from_request(): bool {
		$this->refusal = null;
		if ( ! current_user_can( self::CAPABILITY ) ) {
			return false;
		}
		$nonce = isset( $_POST['_wpnonce'] ) ? sanitize_text_field( wp_unslash( $_POST['_wpnonce'] ) ) : '';
		if ( ! wp_verify_nonce( $nonce, 'woobrevo_save' ) ) {
			return false;
		}
		// The connection fields, each null when not posted (a disabled field is not: the screen
		// disables them for a shop manager). The TLS box, not posted when unticked, counts as
		// posted with the URL.
		$connection    = array(
			'agent_url'   => isset( $_POST[ WooBrevo_Options::AGENT_URL ] ) ? self::stream_url( esc_url_raw( wp_unslash( $_POST[ WooBrevo_Options::AGENT_URL ] ), array( 'ws', 'wss' ) ) ) : null,
			'token'       => isset( $_POST[ WooBrevo_Options::TOKEN ] ) ? sanitize_text_field( wp_unslash( $_POST[ WooBrevo_Options::TOKEN ] ) ) : '',
			'clear_token' => ! empty( $_POST['woobrevo_clear_token'] ),
			'tls_verify'  => empty( $_POST[ WooBrevo_Options::TLS_VERIFY ] ) ? ( isset( $_POST[ WooBrevo_Options::AGENT_URL ] ) ? '0' : null ) : '1',
			'ca_file'     => isset( $_POST[ WooBrevo_Options::CA_FILE ] ) ? sanitize_text_field( wp_unslash( $_POST[ WooBrevo_Options::CA_FILE ] ) ) : null,
		);
		$this->refusal = self::connection_refusal( $connection );
		if ( null !== $this->refusal ) {
			return false;
		}
		if ( current_user_can( self::CONNECTION_CAPABILITY ) ) {
			// A field not posted is empty (an unticked box is not posted either).
			self::set( 'agent_url', $connection['agent_url'] ?? '' );
			if ( '' !== $connection['token'] ) {
				self::set( 'token', $connection['token'] );
			} elseif ( $connection['clear_token'] ) {
				self::set( 'token', '' );
			}
			self::set( 'tls_verify', $connection['tls_verify'] ?? '0' );
			self::set( 'ca_file', $connection['ca_file'] ?? '' );
		}
		self::set( 'payload_user', isset( $_POST[ WooBrevo_Options::PAYLOAD_USER ] ) ? max( 0, absint( wp_unslash( $_POST[ WooBrevo_Options::PAYLOAD_USER ] ) ) ) : 0 );
		self::set( 'guest_carts', empty( $_POST[ WooBrevo_Options::GUEST_CARTS ] ) ? '0' : '1' );
		self::set( 'optin_enabled', empty( $_POST[ WooBrevo_Options::OPTIN_ENABLED ] ) ? '0' : '1' );
		if ( isset( $_POST[ WooBrevo_Options::OPTIN_LABEL ] ) ) {
			self::set( 'optin_label', sanitize_text_field( wp_unslash( $_POST[ WooBrevo_Options::OPTIN_LABEL ] ) ) );
		}
		$forms = isset( $_POST[ WooBrevo_Options::OPTIN_FORMS ] ) ? array_map( static fn( $form ) => sanitize_key( (string) $form ), (array) wp_unslash( $_POST[ WooBrevo_Options::OPTIN_FORMS ] ) ) : array();
		self::set( 'optin_forms', array_values( array_intersect( WooBrevo_Consent::FORMS, $forms ) ) );
		return true;
	}

	/**
	 * Why a posted connection must not be saved, or null.
	 *
	 * - A user without CONNECTION_CAPABILITY (a shop manager) changes none of it: the screen
	 *   shows it read-only, and a request that changes it anyway is refused.
	 * - A new agent (another scheme, host or port) needs the token typed again, or the stored
	 *   one removed. Otherwise whoever may change the URL could send the stored token to a
	 *   server of their choosing and read it there. The save is refused rather than the token
	 *   cleared: a slip of the URL then breaks nothing, and the token is never sent to a server
	 *   nobody typed it for.
	 *
	 * @param array{agent_url: ?string, token: string, clear_token: bool, tls_verify: ?string, ca_file: ?string} $posted The posted connection fields (save_from_request()).
	 * @return string|null
	 */
	private static function connection_refusal( array $posted ): ?string {
		$stored_url = (string) self::get( 'agent_url' );
		if ( ! current_user_can( self::CONNECTION_CAPABILITY ) ) {
			$changed = ( null !== $posted['agent_url'] && $posted['agent_url'] !== $stored_url )
				|| '' !== $posted['token'] || $posted['clear_token']
				|| ( null !== $posted['tls_verify'] && $posted['tls_verify'] !== (string) self::get( 'tls_verify' ) )
				|| ( null !== $posted['ca_file'] && $posted['ca_file'] !== (string) self::get( 'ca_file' ) );
			return $changed ? __( 'Not saved: only an administrator can change the agent URL, the site token and the TLS settings.', 'woobrevo' ) : null;
		}
		$new_url = (string) $posted['agent_url']; // Not posted: no URL (save_from_request()).
		if ( '' === $new_url || '' === (string) self::get( 'token' ) || '' !== $posted['token'] || $posted['clear_token']
			|| self::agent_origin( $new_url ) === self::agent_origin( $stored_url ) ) {
			return null;
		}
		return sprintf(
			/* translators: 1: the new agent URL, 2: the agent URL stored now (or "none"). */
			__( 'Not saved: the agent URL %1$s names another server than %2$s (host, port or scheme). Type the site token again to send it there, or tick "Remove the stored token": the stored token is only sent to the agent it was entered for.', 'woobrevo' ),
			$new_url,
			'' !== $stored_url ? $stored_url : __( 'none', 'woobrevo' )
		);
	}

	/**
	 * Why the last save_from_request() saved nothing, beyond capability and nonce; null when it saved.
	 *
	 * @return string|null
	 */
	public function refusal(): ?string {
		return $this->refusal;
	}

	/**
	 * Form handler (admin-post.php?action=woobrevo_save).
	 *
	 * @return void
	 */
	public function action_admin_post_woobrevo_save(): void {
		if ( ! current_user_can( self::CAPABILITY ) || ! check_admin_referer( 'woobrevo_save' ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'woobrevo' ), 403 );
		}
		if ( ! $this->save_from_request() ) {
			if ( null === $this->refusal ) {
				wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'woobrevo' ), 403 );
			}
			$this->notice( 'error', $this->refusal );
			wp_safe_redirect( admin_url( 'admin.php?page=' . self::PAGE ) );
			exit;
		}
		$this->notice( 'success', __( 'Settings saved.', 'woobrevo' ) );
		wp_safe_redirect( admin_url( 'admin.php?page=' . self::PAGE ) );
		exit;
	}

	/**
	 * Runs one shipper tick now and reports the outcome. Returns null when refused.
	 *
	 * @return array|null Shipper stats.
	 */
	public function test_connection_from_request(): ?array {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			return null;
		}
		$nonce = isset( $_POST['_wpnonce'] ) ? sanitize_text_field( wp_unslash( $_POST['_wpnonce'] ) ) : '';
		if ( ! wp_verify_nonce( $nonce, 'woobrevo_test_connection' ) ) {
			return null;
		}
		if ( ! WooBrevo_Plugin::is_configured() ) {
			return array( 'error' => __( 'Set the agent URL and the site token first.', 'woobrevo' ) );
		}
		update_option( WooBrevo_Options::LAST_TICK, time() ); // This tick is the heartbeat too.
		$shipper = WooBrevo_Plugin::shipper();
		$stats   = $shipper->tick( 5, true );
		$status  = (int) ( $stats['error_code'] ?? 0 );
		if ( in_array( $status, self::WRONG_PATH_STATUSES, true ) ) {
			$url            = (string) self::get( 'agent_url' );
			$candidates     = self::stream_url_candidates( $url );
			$stats['error'] = self::wrong_path_message( $url, $status, $candidates, $shipper->find_stream_url( $candidates, (string) self::get( 'token' ) ) );
			self::set( 'last_error', $stats['error'] ); // The status panel says the same.
		}
		return $stats;
	}

	/**
	 * What Test connection says when nothing answers at the agent URL's path: the URL to set.
	 *
	 * @param string      $url        The stored agent URL.
	 * @param int         $status     The HTTP status it got.
	 * @param string[]    $candidates The URLs tried instead.
	 * @param string|null $found      The one where the agent answered, if any.
	 * @return string
	 */
	public static function wrong_path_message( string $url, int $status, array $candidates, ?string $found ): string {
		if ( null !== $found ) {
			/* translators: 1: the agent URL set now, 2: HTTP status, 3: the agent URL to set instead. */
			return sprintf( __( 'The agent is not at %1$s (HTTP %2$d). Set the agent URL to %3$s', 'woobrevo' ), $url, $status, $found );
		}
		return sprintf(
			/* translators: 1: the agent URL set now, 2: HTTP status, 3: the other URLs tried, 4: the agent's stream path. */
			__( 'The agent is not at %1$s (HTTP %2$d), nor at %3$s. Check the host and port (the agent\'s agent.listen.stream); behind a reverse proxy, set the URL that the proxy forwards to the agent\'s %4$s.', 'woobrevo' ),
			$url,
			$status,
			implode( ', ', $candidates ),
			self::STREAM_PATH
		);
	}

	/**
	 * The notice for a Test connection outcome.
	 *
	 * @param array<string, mixed> $stats What test_connection_from_request() returned.
	 * @return array{0: string, 1: string} Type (success|error) and message.
	 */
	public static function test_connection_notice( array $stats ): array {
		if ( ! empty( $stats['error'] ) ) {
			/* translators: %s: why the connection failed. */
			return array( 'error', sprintf( __( 'Connection failed: %s', 'woobrevo' ), (string) $stats['error'] ) );
		}
		if ( ! empty( $stats['skipped'] ) ) {
			/* translators: %s: why no connection was tried, e.g. another shipper is running for this site. */
			return array( 'error', sprintf( __( 'Not tested: %s. Try again in a moment.', 'woobrevo' ), (string) $stats['skipped'] ) );
		}
		$sent = (int) ( $stats['sent'] ?? 0 );
		/* translators: 1: events sent, 2: events the agent acknowledged (stored). */
		return array( 'success', sprintf( _n( 'Connected; %1$d event sent, %2$d acknowledged by the agent.', 'Connected; %1$d events sent, %2$d acknowledged by the agent.', $sent, 'woobrevo' ), $sent, (int) ( $stats['acked'] ?? 0 ) ) );
	}

	/**
	 * "Test connection" handler (admin-post.php?action=woobrevo_test_connection).
	 *
	 * @return void
	 */
	public function action_admin_post_woobrevo_test_connection(): void {
		if ( ! current_user_can( self::CAPABILITY ) || ! check_admin_referer( 'woobrevo_test_connection' ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'woobrevo' ), 403 );
		}
		$stats = $this->test_connection_from_request();
		if ( null === $stats ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'woobrevo' ), 403 );
		}
		list( $type, $message ) = self::test_connection_notice( $stats );
		$this->notice( $type, $message );
		wp_safe_redirect( admin_url( 'admin.php?page=' . self::PAGE ) );
		exit;
	}

	/**
	 * Warns when the outbox backlog passes a threshold (the depth is cached for a minute).
	 *
	 * @return void
	 */
	public function action_admin_notices(): void {
		if ( ! current_user_can( self::CAPABILITY ) || ! WooBrevo_Schema::is_installed() ) {
			return;
		}
		$depth = get_transient( WooBrevo_Options::DEPTH_TRANSIENT );
		if ( false === $depth ) {
			$depth = ( new WooBrevo_Outbox() )->depth();
			set_transient( WooBrevo_Options::DEPTH_TRANSIENT, $depth, MINUTE_IN_SECONDS );
		}
		/**
		 * Outbox depth above which wp-admin shows a backlog warning.
		 *
		 * @since 0.1.0
		 * @param int $threshold Rows; 1000 by default.
		 */
		$threshold = (int) apply_filters( 'woobrevo_backlog_threshold', 1000 );
		if ( (int) $depth > $threshold ) {
			printf(
				'<div class="notice notice-warning woobrevo-backlog"><p>%s</p></div>',
				esc_html(
					sprintf(
						/* translators: 1: number of changes waiting in the outbox, 2: the backlog threshold. */
						_n(
							'WooBrevo: %1$d change is waiting to be sent to the agent (more than %2$d). Check the connection on the WooBrevo screen.',
							'WooBrevo: %1$d changes are waiting to be sent to the agent (more than %2$d). Check the connection on the WooBrevo screen.',
							(int) $depth,
							'woobrevo'
						),
						(int) $depth,
						$threshold
					)
				)
			);
		}
	}

	/**
	 * Leaves a one-shot message for the next screen.
	 *
	 * @param string $type    success|error.
	 * @param string $message Message.
	 * @return void
	 */
	private function notice( string $type, string $message ): void {
		set_transient(
			WooBrevo_Options::NOTICE_TRANSIENT_PREFIX . get_current_user_id(),
			array(
				'type'    => $type,
				'message' => $message,
			),
			MINUTE_IN_SECONDS
		);
	}
}
