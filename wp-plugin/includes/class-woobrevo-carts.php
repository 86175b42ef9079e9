<?php
/**
 * Abandoned carts, the plugin side: cart snapshots for logged-in shoppers and for guests once
 * their e-mail is known, written to the carts table and announced through the outbox
 * (`cart.updated`, `cart.emptied`, `cart.restored`); and the signed restore link.
 *
 * `woocommerce_cart_updated` fires on most page loads that load a cart, so a hash of the cart,
 * the e-mail and the coupons, kept in the WooCommerce session, decides whether anything
 * changed: an unchanged cart costs a session read and an md5, and writes nothing.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Cart capture and restore. Registered by WooBrevo_Plugin.
 */
final class WooBrevo_Carts {

	/** WooCommerce session key: the id and hash of the cart last written for this session. */
	public const SESSION_STATE = 'woobrevo_cart';

	/** WooCommerce session key: a guest's e-mail, once typed at checkout. */
	public const SESSION_EMAIL = 'woobrevo_email';

	/** The restore link's query argument. */
	public const QUERY_ARG = 'woobrevo_restore';

	/** The classic checkout's e-mail endpoint: REST route and nonce action. */
	public const REST_NAMESPACE = 'woobrevo/v1';
	public const REST_ROUTE     = '/cart-email';
	public const NONCE_ACTION   = 'woobrevo_cart_email';

	/**
	 * Outbox the events go to.
	 *
	 * @var WooBrevo_Outbox
	 */
	private WooBrevo_Outbox $outbox;

	/**
	 * True while a restore rebuilds the cart (its own empty_cart and add_to_cart are not changes).
	 *
	 * @var bool
	 */
	private static bool $restoring = false;

	/**
	 * Constructor.
	 *
	 * @param WooBrevo_Outbox|null $outbox Outbox; the current site's by default.
	 */
	public function __construct( ?WooBrevo_Outbox $outbox = null ) {
		$this->outbox = $outbox ? $outbox : new WooBrevo_Outbox();
	}

	// ----------------------------------------------------------------------------------------
	// Pure parts: no WordPress, no WooCommerce.

	/**
	 * What decides whether a cart changed: WooCommerce's cart hash (items, quantities, totals),
	 * the e-mail and the coupons.
	 *
	 * @param string   $cart_hash WC_Cart::get_cart_hash().
	 * @param string   $email     The shopper's e-mail.
	 * @param string[] $coupons   Applied coupon codes.
	 * @return string 32 hex characters.
	 */
	public static function hash( string $cart_hash, string $email, array $coupons ): string {
		sort( $coupons );
		return md5( $cart_hash . '|' . strtolower( trim( $email ) ) . '|' . implode( ',', $coupons ) );
	}

	/**
	 * Base64url without padding.
	 *
	 * @param string $bytes Bytes.
	 * @return string
	 */
	private static function b64( string $bytes ): string {
		return rtrim( strtr( base64_encode( $bytes ), '+/', '-_' ), '=' ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- a URL-safe token, not obfuscation.
	}

	/**
	 * A restore token: base64url(cart_id.expires) . "." . base64url(HMAC-SHA256(secret, cart_id.expires)).
	 *
	 * @param int    $cart_id Cart id.
	 * @param int    $expires Unix time after which the link is refused.
	 * @param string $secret  The site's secret.
	 * @return string
	 */
	public static function sign( int $cart_id, int $expires, string $secret ): string {
		$data = $cart_id . '.' . $expires;
		return self::b64( $data ) . '.' . self::b64( hash_hmac( 'sha256', $data, $secret, true ) );
	}

	/**
	 * The cart a restore token names, or null when it is forged, altered, malformed or expired.
	 *
	 * @param string $token  From the link.
	 * @param string $secret The site's secret.
	 * @param int    $now    Unix time.
	 * @return int|null Cart id.
	 */
	public static function verify( string $token, string $secret, int $now ): ?int {
		if ( '' === $secret || 1 !== preg_match( '/^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{43})$/', $token, $m ) ) {
			return null;
		}
		$data = base64_decode( strtr( $m[1], '-_', '+/' ), true ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_decode -- see b64().
		if ( false === $data || ! hash_equals( self::b64( hash_hmac( 'sha256', $data, $secret, true ) ), $m[2] ) ) {
			return null;
		}
		if ( 1 !== preg_match( '/^([1-9][0-9]{0,18})\.([0-9]{1,12})$/', $data, $parts ) || (int) $parts[2] < $now ) {
			return null;
		}
		return (int) $parts[1];
	}

	/**
	 * A money value as WooCommerce's REST API writes it: a string with the store's decimals.
	 *
	 * @param mixed $value    Number or numeric string.
	 * @param int   $decimals Store decimals.
	 * @return string
	 */
	public static function money( $value, int $decimals ): string {
		return number_format( is_numeric( $value ) ? (float) $value : 0.0, max( 0, $decimals ), '.', '' );
	}

	/**
	 * The snapshot (the `cart.*` payload of docs/protocol.md) from plain data.
	 *
	 * @param array{id: int, token: string, email: string, customer_id: int} $cart     The carts row.
	 * @param array<int, array<string, mixed>>                               $items    Items: product_id, variation_id, name, quantity, price, image, url.
	 * @param array<string, mixed>                                           $totals   subtotal, discount, shipping, tax, total.
	 * @param array{currency: string, decimals: int, locale: string, restore_url: string, now: int} $context  Store and link.
	 * @param string[]                                                       $coupons  Applied coupon codes.
	 * @return array<string, mixed>
	 */
	public static function snapshot( array $cart, array $items, array $totals, array $context, array $coupons ): array {
		$decimals = (int) $context['decimals'];
		$lines    = array();
		foreach ( $items as $item ) {
			$lines[] = array(
				'product_id'   => (int) $item['product_id'],
				'variation_id' => (int) ( $item['variation_id'] ?? 0 ),
				'name'         => (string) $item['name'],
				'quantity'     => (int) $item['quantity'],
				'price'        => self::money( $item['price'], $decimals ),
				'image'        => (string) ( $item['image'] ?? '' ),
				'url'          => (string) ( $item['url'] ?? '' ),
			);
		}
		$money = array();
		foreach ( array( 'subtotal', 'discount', 'shipping', 'tax', 'total' ) as $key ) {
			$money[ $key ] = self::money( $totals[ $key ] ?? 0, $decimals );
		}
		return array(
			'id'                => (int) $cart['id'],
			'token'             => (string) $cart['token'],
			'email'             => '' === (string) $cart['email'] ? null : (string) $cart['email'],
			'customer_id'       => (int) $cart['customer_id'],
			'items'             => $lines,
			'totals'            => $money,
			'currency'          => (string) $context['currency'],
			'coupons'           => array_values( array_map( 'strval', $coupons ) ),
			'restore_url'       => (string) $context['restore_url'],
			'locale'            => (string) $context['locale'],
			'date_modified_gmt' => gmdate( 'Y-m-d\TH:i:s', (int) $context['now'] ),
		);
	}

	// ----------------------------------------------------------------------------------------
	// Settings.

	/**
	 * Whether the agent wants carts (the welcome's `carts.enabled`; on until it says otherwise).
	 *
	 * @return bool
	 */
	public static function enabled(): bool {
		return '1' === WooBrevo_Settings::get( 'carts_enabled' );
	}

	/**
	 * Stores the welcome's `carts` field (WooBrevo_Protocol::parse()), written only on change.
	 *
	 * @param array{enabled: bool, link_lifetime: int} $carts The parsed field.
	 * @return void
	 */
	public static function remember_settings( array $carts ): void {
		$enabled  = empty( $carts['enabled'] ) ? '0' : '1';
		$lifetime = max( 60, (int) ( $carts['link_lifetime'] ?? WooBrevo_Protocol::DEFAULT_CART_LINK_LIFETIME ) );
		if ( WooBrevo_Settings::get( 'carts_enabled' ) !== $enabled ) {
			WooBrevo_Settings::set( 'carts_enabled', $enabled );
		}
		if ( WooBrevo_Settings::get( 'cart_link_lifetime' ) !== $lifetime ) {
			WooBrevo_Settings::set( 'cart_link_lifetime', $lifetime );
		}
	}

	/**
	 * The site's restore-link secret, made on first use if the install did not.
	 *
	 * @return string
	 */
	public static function secret(): string {
		$secret = (string) get_option( WooBrevo_Options::CART_SECRET, '' );
		if ( '' === $secret ) {
			$secret = bin2hex( random_bytes( 32 ) );
			update_option( WooBrevo_Options::CART_SECRET, $secret, false );
		}
		return $secret;
	}

	/**
	 * The restore link of a cart, valid for the agent's link lifetime from $now.
	 *
	 * @param int $cart_id Cart id.
	 * @param int $now     Unix time.
	 * @return string
	 */
	public static function restore_url( int $cart_id, int $now ): string {
		$expires = $now + max( 60, (int) WooBrevo_Settings::get( 'cart_link_lifetime' ) );
		return add_query_arg( self::QUERY_ARG, self::sign( $cart_id, $expires, self::secret() ), home_url( '/' ) );
	}

	// ----------------------------------------------------------------------------------------
	// Capture.

	/**
	 * WooCommerce's cart, when this request has one.
	 *
	 * @return object|null
	 */
	private static function cart(): ?object {
		return function_exists( 'WC' ) && isset( WC()->cart ) && is_object( WC()->cart ) ? WC()->cart : null;
	}

	/**
	 * WooCommerce's session, when this request has one.
	 *
	 * @return object|null
	 */
	private static function session(): ?object {
		return function_exists( 'WC' ) && isset( WC()->session ) && is_object( WC()->session ) ? WC()->session : null;
	}

	/**
	 * Who the cart belongs to: [customer id, e-mail, session key], or null when it is not captured
	 * (a guest whose e-mail is not known yet, or guest capture switched off).
	 *
	 * @param object $session WooCommerce session.
	 * @return array{0: int, 1: string, 2: string}|null
	 */
	private static function shopper( object $session ): ?array {
		$user_id = get_current_user_id();
		if ( $user_id > 0 ) {
			$user = wp_get_current_user();
			return '' === (string) $user->user_email ? null : array( $user_id, (string) $user->user_email, (string) $user_id );
		}
		if ( '1' !== WooBrevo_Settings::get( 'guest_carts' ) ) {
			return null;
		}
		$email = (string) $session->get( self::SESSION_EMAIL );
		if ( '' === $email ) {
			return null;
		}
		return array( 0, $email, 'guest:' . (string) $session->get_customer_id() );
	}

	/**
	 * `woocommerce_cart_updated` (most page loads, every totals calculation): a snapshot only
	 * when the hash moved.
	 *
	 * @return void
	 */
	public function action_woocommerce_cart_updated(): void {
		$this->capture( 'updated' );
	}

	/**
	 * `woocommerce_cart_emptied`: WC_Cart::empty_cart() fires no cart_updated.
	 *
	 * @return void
	 */
	public function action_woocommerce_cart_emptied(): void {
		$this->capture( 'updated' );
	}

	/**
	 * Classic checkout placed an order: the cart ends with it.
	 *
	 * @param int $order_id Order id.
	 * @return void
	 */
	public function action_woocommerce_checkout_order_processed( $order_id ): void {
		$this->capture( 'emptied', (int) $order_id );
	}

	/**
	 * Block checkout (Store API) placed an order.
	 *
	 * @param mixed $order The order.
	 * @return void
	 */
	public function action_woocommerce_store_api_checkout_order_processed( $order ): void {
		if ( is_object( $order ) && method_exists( $order, 'get_id' ) ) {
			$this->capture( 'emptied', (int) $order->get_id() );
		}
	}

	/**
	 * Block checkout sent the customer's address: the guest's e-mail is known.
	 *
	 * @param mixed $customer WC_Customer being updated.
	 * @param mixed $request  WP_REST_Request.
	 * @return void
	 */
	public function action_woocommerce_store_api_cart_update_customer_from_request( $customer, $request = null ): void {
		$email = is_object( $customer ) && is_callable( array( $customer, 'get_billing_email' ) ) ? (string) $customer->get_billing_email() : '';
		if ( '' === $email && $request instanceof WP_REST_Request ) {
			$billing = $request->get_param( 'billing_address' );
			$email   = is_array( $billing ) && isset( $billing['email'] ) ? (string) $billing['email'] : '';
		}
		$this->remember_email( $email );
	}

	/**
	 * Registers the classic checkout's endpoint: POST /wp-json/woobrevo/v1/cart-email (email, nonce).
	 *
	 * @return void
	 */
	public function action_rest_api_init(): void {
		register_rest_route(
			self::REST_NAMESPACE,
			self::REST_ROUTE,
			array(
				'methods'             => 'POST',
				'callback'            => array( $this, 'rest_cart_email' ),
				'permission_callback' => array( __CLASS__, 'rest_nonce_ok' ),
				'args'                => array(
					'email' => array(
						'type'     => 'string',
						'required' => true,
					),
					'nonce' => array(
						'type'     => 'string',
						'required' => true,
					),
				),
			)
		);
	}

	/**
	 * The endpoint's check: a shopper, not an administrator, so the nonce the checkout page carries.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return bool
	 */
	public static function rest_nonce_ok( WP_REST_Request $request ): bool {
		return false !== wp_verify_nonce( (string) $request->get_param( 'nonce' ), self::NONCE_ACTION );
	}

	/**
	 * The endpoint: the guest's e-mail, then a snapshot. WooCommerce loads no cart for REST requests
	 * but its Store API's: load it here as the Store API does.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return WP_REST_Response
	 */
	public function rest_cart_email( WP_REST_Request $request ): WP_REST_Response {
		if ( null === self::cart() && function_exists( 'wc_load_cart' ) ) {
			wc_load_cart();
		}
		return new WP_REST_Response( array( 'captured' => $this->remember_email( (string) $request->get_param( 'email' ) ) ) );
	}

	/**
	 * Keeps a guest's e-mail in the session and snapshots the cart if that changed it.
	 *
	 * @param string $email E-mail as typed.
	 * @return bool Whether it was a valid address (and stored).
	 */
	public function remember_email( string $email ): bool {
		$email   = sanitize_email( $email );
		$session = self::session();
		if ( '' === $email || ! is_email( $email ) || null === $session || is_user_logged_in() ) {
			return false;
		}
		if ( (string) $session->get( self::SESSION_EMAIL ) !== $email ) {
			$session->set( self::SESSION_EMAIL, $email );
		}
		$this->capture( 'updated' );
		return true;
	}

	/**
	 * The checkout's e-mail script, on the checkout page only, for guests, when guest carts are captured.
	 *
	 * @return void
	 */
	public function action_wp_enqueue_scripts(): void {
		if ( is_user_logged_in() || ! self::enabled() || '1' !== WooBrevo_Settings::get( 'guest_carts' ) || ! function_exists( 'is_checkout' ) || ! is_checkout() ) {
			return;
		}
		wp_enqueue_script( 'woobrevo-cart-email', plugins_url( 'assets/woobrevo-cart-email.js', WOOBREVO_FILE ), array(), WOOBREVO_VERSION, true );
		wp_localize_script(
			'woobrevo-cart-email',
			'woobrevoCartEmail',
			array(
				'url'   => rest_url( self::REST_NAMESPACE . self::REST_ROUTE ),
				'nonce' => wp_create_nonce( self::NONCE_ACTION ),
			)
		);
	}

	/**
	 * Writes a snapshot when the cart's hash moved (or always, for an order or a restore).
	 *
	 * @param string $action   updated (a change, or an empty cart: emptied), emptied (an order) or restored.
	 * @param int    $order_id The order that ended the cart.
	 * @return void
	 */
	private function capture( string $action, int $order_id = 0 ): void {
		$cart    = self::cart();
		$session = self::session();
		if ( self::$restoring || null === $cart || null === $session || ! self::enabled() ) {
			return;
		}
		$shopper = self::shopper( $session );
		if ( null === $shopper ) {
			return;
		}
		list( $customer_id, $email, $session_key ) = $shopper;
		$state   = $session->get( self::SESSION_STATE );
		$state   = is_array( $state ) ? $state : array();
		$coupons = array_values( array_map( 'strval', (array) $cart->get_applied_coupons() ) );
		$hash    = self::hash( (string) $cart->get_cart_hash(), $email, $coupons );
		if ( 'updated' === $action && ( $state['hash'] ?? '' ) === $hash ) {
			return; // The common case: a page view over an unchanged cart.
		}
		$empty = array() === (array) $cart->get_cart();
		if ( ( $empty && 'updated' === $action && ! isset( $state['hash'] ) ) || ! WooBrevo_Schema::is_installed() ) {
			return; // An empty cart never captured in this session: nothing to write, no session to start.
		}
		list( $id, $stored_hash ) = $this->live_cart( $session_key );
		if ( 'updated' === $action && $stored_hash === $hash ) {
			$session->set( self::SESSION_STATE, array( 'hash' => $hash ) ); // Known already (another device, a lost session).
			return;
		}
		if ( $empty && 'restored' !== $action ) {
			$action = 'emptied';
		}
		if ( 0 === $id && 'emptied' === $action && 0 === $order_id ) {
			$session->set( self::SESSION_STATE, array( 'hash' => $hash ) ); // Empty, and nothing to end.
			return;
		}
		$id = $this->write( $id, $customer_id, $email, $session_key, $hash, $coupons, $order_id, 'emptied' === $action );
		$this->outbox->add( 'cart', $id, $action );
		$session->set( self::SESSION_STATE, array( 'hash' => $hash ) );
	}

	/**
	 * The session's cart still going (not emptied, not ordered): [id, hash of its last snapshot],
	 * [0, ''] when there is none.
	 *
	 * @param string $session_key The user id, or "guest:" and WooCommerce's session id.
	 * @return array{0: int, 1: string}
	 */
	private function live_cart( string $session_key ): array {
		global $wpdb;
		$table = WooBrevo_Schema::carts_table();
		$row   = $wpdb->get_row( $wpdb->prepare( "SELECT id, hash FROM {$table} WHERE session_key = %s ORDER BY id DESC LIMIT 1", $session_key ), ARRAY_A ); // phpcs:ignore -- the table name is ours.
		return is_array( $row ) ? array( (int) $row['id'], (string) $row['hash'] ) : array( 0, '' );
	}

	/**
	 * Stores a snapshot of the current cart in its row (a new row with a new token when $id is 0).
	 * An ended cart leaves its session: the next item starts a new cart. An emptied cart keeps
	 * its last items, an ordered one gets the order id.
	 *
	 * @param int      $id          Cart id, 0 for a new cart.
	 * @param int      $customer_id User id, 0 for guests.
	 * @param string   $email       E-mail.
	 * @param string   $session_key Session key.
	 * @param string   $hash        The cart's hash.
	 * @param string[] $coupons     Applied coupons.
	 * @param int      $order_id    The order that ended it, 0 if none.
	 * @param bool     $ended       Whether the cart ends here (emptied or ordered).
	 * @return int Cart id.
	 * @throws RuntimeException When the database refuses the write.
	 */
	private function write( int $id, int $customer_id, string $email, string $session_key, string $hash, array $coupons, int $order_id, bool $ended ): int {
		global $wpdb;
		$table = WooBrevo_Schema::carts_table();
		$token = $id > 0 ? (string) $wpdb->get_var( $wpdb->prepare( "SELECT token FROM {$table} WHERE id = %d", $id ) ) : ''; // phpcs:ignore -- the table name is ours.
		if ( '' === $token ) {
			$token = bin2hex( random_bytes( 16 ) );
			$row = array(
				'token'       => $token,
				'session_key' => $session_key,
			);
			if ( false === $wpdb->insert( $table, $row, array( '%s', '%s' ) ) ) {
				throw new RuntimeException( 'woobrevo carts insert failed: ' . $wpdb->last_error );
			}
			$id = (int) $wpdb->insert_id;
		}
		$now      = time();
		$snapshot = $this->current_snapshot(
			array(
				'id'          => $id,
				'token'       => $token,
				'email'       => $email,
				'customer_id' => $customer_id,
			),
			$coupons,
			$now
		);
		$previous = $ended && 0 === $order_id ? self::stored_snapshot( $id ) : null;
		if ( $order_id > 0 ) {
			$snapshot['order_id'] = $order_id;
		} elseif ( null !== $previous ) {
			// An emptied cart ships its last items (what the restore link brings back), not [].
			foreach ( array( 'items', 'totals', 'coupons' ) as $key ) {
				$snapshot[ $key ] = $previous[ $key ] ?? $snapshot[ $key ];
			}
		}
		$wpdb->update(
			$table,
			array(
				'session_key'  => $ended ? '' : $session_key,
				'customer_id'  => $customer_id,
				'email'        => $email,
				'hash'         => $hash,
				'snapshot'     => (string) wp_json_encode( $snapshot ),
				'snapshot_gmt' => gmdate( 'Y-m-d H:i:s', $now ),
			),
			array( 'id' => $id ),
			array( '%s', '%d', '%s', '%s', '%s', '%s' ),
			array( '%d' )
		);
		return $id;
	}

	/**
	 * The snapshot of WooCommerce's current cart.
	 *
	 * @param array{id: int, token: string, email: string, customer_id: int} $row     The carts row.
	 * @param string[]                                                       $coupons Applied coupons.
	 * @param int                                                            $now     Unix time.
	 * @return array<string, mixed>
	 */
	private function current_snapshot( array $row, array $coupons, int $now ): array {
		$cart  = self::cart();
		$items = array();
		foreach ( (array) $cart->get_cart() as $item ) {
			$product = $item['data'] ?? null;
			if ( ! is_object( $product ) ) {
				continue;
			}
			$image   = method_exists( $product, 'get_image_id' ) ? wp_get_attachment_image_url( (int) $product->get_image_id(), 'woocommerce_thumbnail' ) : '';
			$items[] = array(
				'product_id'   => (int) ( $item['product_id'] ?? 0 ),
				'variation_id' => (int) ( $item['variation_id'] ?? 0 ),
				'name'         => (string) $product->get_name(),
				'quantity'     => (int) ( $item['quantity'] ?? 0 ),
				'price'        => $product->get_price(),
				'image'        => is_string( $image ) ? $image : '',
				'url'          => (string) $product->get_permalink(),
			);
		}
		$totals = (array) $cart->get_totals();
		return self::snapshot(
			$row,
			$items,
			array(
				'subtotal' => $totals['subtotal'] ?? 0,
				'discount' => $totals['discount_total'] ?? 0,
				'shipping' => $totals['shipping_total'] ?? 0,
				'tax'      => $totals['total_tax'] ?? 0,
				'total'    => $totals['total'] ?? 0,
			),
			array(
				'currency'    => get_woocommerce_currency(),
				'decimals'    => wc_get_price_decimals(),
				'locale'      => get_locale(),
				'restore_url' => self::restore_url( (int) $row['id'], $now ),
				'now'         => $now,
			),
			$coupons
		);
	}

	/**
	 * The stored snapshot of a cart (the payload of its cart.* events), or null when there is none.
	 *
	 * @param int $id Cart id.
	 * @return array<string, mixed>|null
	 */
	public static function stored_snapshot( int $id ): ?array {
		global $wpdb;
		$table    = WooBrevo_Schema::carts_table();
		$snapshot = json_decode( (string) $wpdb->get_var( $wpdb->prepare( "SELECT snapshot FROM {$table} WHERE id = %d", $id ) ), true ); // phpcs:ignore -- the table name is ours.
		return is_array( $snapshot ) ? $snapshot : null;
	}

	// ----------------------------------------------------------------------------------------
	// Restore.

	/**
	 * `wp_loaded` (after WooCommerce loads the cart): a restore link is followed, then redirected.
	 *
	 * @return void
	 */
	public function action_wp_loaded(): void {
		if ( ! isset( $_GET[ self::QUERY_ARG ] ) || is_admin() || ! function_exists( 'wc_add_notice' ) ) { // phpcs:ignore WordPress.Security.NonceVerification.Recommended -- the link is signed.
			return; // A shopper's link: the storefront only, where WooCommerce has its cart and notices.
		}
		$to = $this->restore( sanitize_text_field( wp_unslash( $_GET[ self::QUERY_ARG ] ) ) ); // phpcs:ignore WordPress.Security.NonceVerification.Recommended -- the link is signed.
		if ( null !== $to && wp_safe_redirect( $to ) ) {
			exit;
		}
	}

	/**
	 * Rebuilds the cart a restore token names: items still for sale, coupons still valid. A
	 * forged, altered or expired token changes nothing and leaves an error notice.
	 *
	 * @param string $token The link's token.
	 * @return string|null Where to send the shopper, or null when refused.
	 */
	public function restore( string $token ): ?string {
		$id       = self::verify( $token, self::secret(), time() );
		$snapshot = null === $id ? null : self::stored_snapshot( $id );
		$cart     = self::cart();
		$session  = self::session();
		if ( null === $snapshot || null === $cart || null === $session || ! WooBrevo_Schema::is_installed() ) {
			wc_add_notice( __( 'This cart link is not valid or has expired.', 'woobrevo' ), 'error' );
			return null;
		}
		self::$restoring = true;
		try {
			$cart->empty_cart( false );
			$skipped = $this->add_items( $cart, (array) ( $snapshot['items'] ?? array() ) );
			foreach ( (array) ( $snapshot['coupons'] ?? array() ) as $code ) {
				if ( ! in_array( (string) $code, (array) $cart->get_applied_coupons(), true ) ) {
					$cart->apply_coupon( (string) $code );
				}
			}
		} finally {
			self::$restoring = false;
		}
		if ( $skipped ) {
			wc_add_notice(
				sprintf(
					/* translators: %s: product names, comma separated. */
					_n( 'This product is no longer available and was left out of your cart: %s', 'These products are no longer available and were left out of your cart: %s', count( $skipped ), 'woobrevo' ),
					implode( ', ', $skipped )
				),
				'notice'
			);
		}
		$this->adopt( $id, $session );
		$this->capture( 'restored' );
		/**
		 * Where a followed restore link sends the shopper.
		 *
		 * @since 0.1.0
		 * @param string $url The cart page; return wc_get_checkout_url() for the checkout.
		 * @param int    $id  The cart id.
		 */
		return (string) apply_filters( 'woobrevo_restore_redirect', wc_get_cart_url(), $id );
	}

	/**
	 * Adds a snapshot's items to the cart; returns the names of those gone or out of stock.
	 *
	 * @param object $cart  WooCommerce's cart.
	 * @param array  $items Snapshot items.
	 * @return string[]
	 */
	private function add_items( object $cart, array $items ): array {
		$skipped = array();
		foreach ( $items as $item ) {
			$product_id   = (int) ( $item['product_id'] ?? 0 );
			$variation_id = (int) ( $item['variation_id'] ?? 0 );
			$product      = wc_get_product( $variation_id > 0 ? $variation_id : $product_id );
			$available    = $product && 'publish' === $product->get_status() && $product->is_in_stock();
			if ( ! $available || false === $cart->add_to_cart( $product_id, max( 1, (int) ( $item['quantity'] ?? 1 ) ), $variation_id ) ) {
				$skipped[] = (string) ( $item['name'] ?? $product_id );
			}
		}
		return $skipped;
	}

	/**
	 * Makes the restored cart this session's cart: a guest's e-mail comes with it, and a new
	 * browser gets its session cookie.
	 *
	 * @param int    $id      Cart id.
	 * @param object $session WooCommerce session.
	 * @return void
	 */
	private function adopt( int $id, object $session ): void {
		global $wpdb;
		$table = WooBrevo_Schema::carts_table();
		$row   = $wpdb->get_row( $wpdb->prepare( "SELECT customer_id, email FROM {$table} WHERE id = %d", $id ), ARRAY_A ); // phpcs:ignore -- the table name is ours.
		if ( method_exists( $session, 'has_session' ) && ! $session->has_session() && method_exists( $session, 'set_customer_session_cookie' ) ) {
			$session->set_customer_session_cookie( true );
		}
		$user_id = get_current_user_id();
		if ( 0 === $user_id && is_array( $row ) && '' !== (string) $row['email'] ) {
			$session->set( self::SESSION_EMAIL, (string) $row['email'] );
		}
		$key = $user_id > 0 ? (string) $user_id : 'guest:' . (string) $session->get_customer_id();
		// Whatever cart the session had before is replaced by this one.
		$wpdb->query( $wpdb->prepare( "UPDATE {$table} SET session_key = '' WHERE session_key = %s AND id <> %d", $key, $id ) ); // phpcs:ignore -- the table name is ours.
		$wpdb->update( $table, array( 'session_key' => $key ), array( 'id' => $id ), array( '%s' ), array( '%d' ) );
	}
}
