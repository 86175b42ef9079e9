<?php
/**
 * WooCommerce test double: REST API keys as WooCommerce 10.0.2 keeps and checks them
 * (WC_Install's `woocommerce_api_keys` table, WC_REST_Authentication), so the agent's REST
 * client can poll the test WordPress served over HTTP (tests/chaos).
 *
 * What WooCommerce does, and only that (reference NOTES §3; the recordings in
 * tests/fixtures/woocommerce/real-10.0.2/rest/auth/): only URLs under `wp-json/wc/` (or `wc-`)
 * are authenticated; over HTTPS a key in `consumer_key`/`consumer_secret` or Basic auth, looked
 * up by `wc_api_hash()` of the key, an unknown key setting no error and a wrong secret 401
 * "Consumer secret is invalid."; then (and always over HTTP) one-legged OAuth 1.0a: the base
 * string from the home URL and the request path, params sorted by raw key with strcmp,
 * RFC 3986-encoded, each pair encoded again, HMAC-SHA1 or HMAC-SHA256 with `secret&`,
 * ±15 minutes, each nonce once per key (kept by timestamp in the `nonces` column); then the
 * key's read/write permission per method. Every refusal is a 401 `woocommerce_rest_*` error.
 *
 * @package WooBrevo\Tests
 */

defined( 'ABSPATH' ) || exit;

if ( ! function_exists( 'wc_api_hash' ) ) {
	/** WooCommerce's hash of a consumer key, as stored (wc-core-functions.php). */
	function wc_api_hash( string $data ): string {
		return hash_hmac( 'sha256', $data, 'wc-api' );
	}
}

if ( ! function_exists( 'wc_rand_hash' ) ) {
	/** WooCommerce's random hash for new keys (wc-core-functions.php). */
	function wc_rand_hash(): string {
		return bin2hex( random_bytes( 20 ) );
	}
}

if ( ! function_exists( 'wc_rest_urlencode_rfc3986' ) ) {
	/** WooCommerce's RFC 3986 encoding of OAuth parameters (wc-rest-functions.php). */
	function wc_rest_urlencode_rfc3986( $value ) {
		if ( is_array( $value ) ) {
			return array_map( 'wc_rest_urlencode_rfc3986', $value );
		}
		return str_replace( array( '+', '%7E' ), array( ' ', '~' ), rawurlencode( (string) $value ) );
	}
}

/**
 * WC_Install's table of REST API keys, created as WC_Install::check_version() does it: on `init`
 * when the site's schema is not there yet (never during WordPress's own install).
 */
function wcd_install_api_keys_table(): void {
	global $wpdb;
	if ( wp_installing() || get_option( 'wcd_api_keys_db' ) ) {
		return;
	}
	$collate = $wpdb->get_charset_collate();
	$wpdb->query( // phpcs:ignore -- WC_Install's schema; no user input.
		"CREATE TABLE IF NOT EXISTS {$wpdb->prefix}woocommerce_api_keys (
			key_id BIGINT UNSIGNED NOT NULL auto_increment,
			user_id BIGINT UNSIGNED NOT NULL,
			description varchar(200) NULL,
			permissions varchar(10) NOT NULL,
			consumer_key char(64) NOT NULL,
			consumer_secret char(43) NOT NULL,
			nonces longtext NULL,
			truncated_key char(7) NOT NULL,
			last_access datetime NULL default null,
			PRIMARY KEY  (key_id),
			KEY consumer_key (consumer_key),
			KEY consumer_secret (consumer_secret)
		) $collate"
	);
	update_option( 'wcd_api_keys_db', '1' );
}
add_action( 'init', 'wcd_install_api_keys_table', 5 );

/**
 * A new key as WooCommerce's Add key screen makes it (WC_AJAX::update_api_key): the consumer key
 * is stored hashed, the secret as it is; returns both as the screen shows them once.
 *
 * @return array{key_id:int,consumer_key:string,consumer_secret:string}
 */
function wcd_create_api_key( int $user_id, string $description, string $permissions ): array {
	global $wpdb;
	$consumer_key    = 'ck_' . wc_rand_hash();
	$consumer_secret = 'cs_' . wc_rand_hash();
	$wpdb->insert(
		$wpdb->prefix . 'woocommerce_api_keys',
		array(
			'user_id'         => $user_id,
			'description'     => $description,
			'permissions'     => $permissions,
			'consumer_key'    => wc_api_hash( $consumer_key ),
			'consumer_secret' => $consumer_secret,
			'truncated_key'   => substr( $consumer_key, -7 ),
		),
		array( '%d', '%s', '%s', '%s', '%s', '%s' )
	);
	return array(
		'key_id'          => (int) $wpdb->insert_id,
		'consumer_key'    => $consumer_key,
		'consumer_secret' => $consumer_secret,
	);
}

/** WC_REST_Authentication, as far as a REST client's GETs and writes meet it. */
final class WCD_REST_Authentication {
	/** @var WP_Error|null */
	private $error = null;
	/** @var object|null The key's row. */
	private $user = null;
	/** @var string */
	private $auth_method = '';

	public function __construct() {
		add_filter( 'determine_current_user', array( $this, 'authenticate' ), 15 );
		add_filter( 'rest_authentication_errors', array( $this, 'authentication_fallback' ), 999 );
		add_filter( 'rest_authentication_errors', array( $this, 'check_authentication_error' ), 15 );
		add_filter( 'rest_post_dispatch', array( $this, 'send_unauthorized_headers' ), 50 );
		add_filter( 'rest_pre_dispatch', array( $this, 'check_user_permissions' ), 10, 3 );
	}

	private function is_request_to_rest_api(): bool {
		if ( empty( $_SERVER['REQUEST_URI'] ) ) {
			return false;
		}
		$rest_prefix = trailingslashit( rest_get_url_prefix() );
		$request_uri = esc_url_raw( wp_unslash( $_SERVER['REQUEST_URI'] ) ); // phpcs:ignore -- as WooCommerce reads it.
		$woocommerce = false !== strpos( $request_uri, $rest_prefix . 'wc/' );
		$third_party = false !== strpos( $request_uri, $rest_prefix . 'wc-' );
		return (bool) apply_filters( 'woocommerce_rest_is_request_to_rest_api', $woocommerce || $third_party );
	}

	/**
	 * `determine_current_user`: the key's user, or what was there.
	 *
	 * @param int|false $user_id The user found so far.
	 * @return int|false
	 */
	public function authenticate( $user_id ) {
		if ( ! empty( $user_id ) || ! $this->is_request_to_rest_api() ) {
			return $user_id;
		}
		if ( is_ssl() ) {
			$user_id = $this->perform_basic_authentication();
		}
		if ( $user_id ) {
			return $user_id;
		}
		return $this->perform_oauth_authentication();
	}

	/**
	 * `rest_authentication_errors` (15): the error authentication set.
	 *
	 * @param WP_Error|null|true $error The error so far.
	 * @return WP_Error|null|true
	 */
	public function check_authentication_error( $error ) {
		if ( ! empty( $error ) ) {
			return $error;
		}
		return $this->error;
	}

	/**
	 * `rest_authentication_errors` (999): authenticate now when `determine_current_user` never ran.
	 *
	 * @param WP_Error|null|true $error The error so far.
	 * @return WP_Error|null|true
	 */
	public function authentication_fallback( $error ) {
		if ( ! empty( $error ) ) {
			return $error;
		}
		if ( null === $this->error && '' === $this->auth_method && null === $this->user && 0 === get_current_user_id() ) {
			$user_id = $this->authenticate( false );
			if ( $user_id ) {
				wp_set_current_user( $user_id );
				return true;
			}
		}
		return $error;
	}

	private function set_error( WP_Error $error ): void {
		$this->user  = null;
		$this->error = $error;
	}

	private function auth_error( string $message ): WP_Error {
		return new WP_Error( 'woocommerce_rest_authentication_error', $message, array( 'status' => 401 ) );
	}

	/** @return int|false */
	private function perform_basic_authentication() {
		$this->auth_method = 'basic_auth';
		$consumer_key      = '';
		$consumer_secret   = '';
		// phpcs:disable WordPress.Security.NonceVerification.Recommended -- an API key, not a form.
		if ( ! empty( $_GET['consumer_key'] ) && ! empty( $_GET['consumer_secret'] ) ) {
			$consumer_key    = sanitize_text_field( wp_unslash( $_GET['consumer_key'] ) );
			$consumer_secret = sanitize_text_field( wp_unslash( $_GET['consumer_secret'] ) );
		}
		// phpcs:enable
		if ( ! $consumer_key && ! empty( $_SERVER['PHP_AUTH_USER'] ) && ! empty( $_SERVER['PHP_AUTH_PW'] ) ) {
			$consumer_key    = sanitize_text_field( wp_unslash( $_SERVER['PHP_AUTH_USER'] ) );
			$consumer_secret = sanitize_text_field( wp_unslash( $_SERVER['PHP_AUTH_PW'] ) );
		}
		if ( ! $consumer_key || ! $consumer_secret ) {
			return false;
		}
		$this->user = $this->get_user_data_by_consumer_key( $consumer_key );
		if ( empty( $this->user ) ) {
			return false; // An unknown key sets no error: the request goes on unauthenticated.
		}
		if ( ! hash_equals( $this->user->consumer_secret, $consumer_secret ) ) {
			$this->set_error( $this->auth_error( 'Consumer secret is invalid.' ) );
			return false;
		}
		return (int) $this->user->user_id;
	}

	private function get_authorization_header(): string {
		if ( ! empty( $_SERVER['HTTP_AUTHORIZATION'] ) ) {
			return wp_unslash( $_SERVER['HTTP_AUTHORIZATION'] ); // phpcs:ignore -- parsed below.
		}
		if ( function_exists( 'getallheaders' ) ) {
			$headers = getallheaders();
			foreach ( $headers as $key => $value ) {
				if ( 'authorization' === strtolower( $key ) ) {
					return $value;
				}
			}
		}
		return '';
	}

	/** The `oauth_*` pairs of an `Authorization: OAuth …` header. */
	private function parse_header( string $header ): array {
		if ( 'OAuth ' !== substr( $header, 0, 6 ) ) {
			return array();
		}
		$params = array();
		if ( preg_match_all( '/(oauth_[a-z_-]*)=(:?"([^"]*)"|([^,]*))/', $header, $matches ) ) {
			foreach ( $matches[1] as $i => $h ) {
				$params[ $h ] = urldecode( empty( $matches[3][ $i ] ) ? $matches[4][ $i ] : $matches[3][ $i ] );
			}
			if ( isset( $params['realm'] ) ) {
				unset( $params['realm'] );
			}
		}
		return $params;
	}

	private function get_oauth_parameters(): array {
		$params = array_merge( $_GET, $_POST ); // phpcs:ignore WordPress.Security.NonceVerification -- signed below.
		$params = wp_unslash( $params );
		$header = $this->get_authorization_header();
		if ( ! empty( $header ) ) {
			$params = array_merge( $params, $this->parse_header( trim( $header ) ) );
		}
		$param_names = array( 'oauth_consumer_key', 'oauth_timestamp', 'oauth_nonce', 'oauth_signature', 'oauth_signature_method' );
		$errors      = array();
		$have_one    = false;
		foreach ( $param_names as $param_name ) {
			if ( empty( $params[ $param_name ] ) ) {
				$errors[] = $param_name;
			} else {
				$have_one = true;
			}
		}
		if ( $have_one && ! empty( $errors ) ) {
			$this->set_error(
				new WP_Error(
					'woocommerce_rest_authentication_missing_parameter',
					sprintf( 'Missing OAuth parameter%s %s', count( $errors ) > 1 ? 's' : '', implode( ', ', $errors ) ),
					array( 'status' => 401 )
				)
			);
			return array();
		}
		return $have_one ? $params : array();
	}

	/** @return int|false */
	private function perform_oauth_authentication() {
		$this->auth_method = 'oauth1';
		$params            = $this->get_oauth_parameters();
		if ( empty( $params ) ) {
			return false;
		}
		$this->user = $this->get_user_data_by_consumer_key( (string) $params['oauth_consumer_key'] );
		if ( empty( $this->user ) ) {
			$this->set_error( $this->auth_error( 'Consumer key is invalid.' ) );
			return false;
		}
		if ( ! $this->check_oauth_signature( $this->user, $params ) ) {
			return false;
		}
		if ( ! $this->check_oauth_timestamp_and_nonce( $this->user, (string) $params['oauth_timestamp'], (string) $params['oauth_nonce'] ) ) {
			return false;
		}
		return (int) $this->user->user_id;
	}

	private function check_oauth_signature( object $user, array $params ): bool {
		$http_method  = isset( $_SERVER['REQUEST_METHOD'] ) ? strtoupper( sanitize_text_field( wp_unslash( $_SERVER['REQUEST_METHOD'] ) ) ) : '';
		$request_path = isset( $_SERVER['REQUEST_URI'] ) ? (string) wp_parse_url( wp_unslash( $_SERVER['REQUEST_URI'] ), PHP_URL_PATH ) : ''; // phpcs:ignore -- a path.
		$wp_base      = get_home_url( null, '/', 'relative' );
		if ( substr( $request_path, 0, strlen( $wp_base ) ) === $wp_base ) {
			$request_path = substr( $request_path, strlen( $wp_base ) );
		}
		// The home URL, not the Host header the request came with.
		$base_request_uri   = rawurlencode( get_home_url( null, $request_path, is_ssl() ? 'https' : 'http' ) );
		$consumer_signature = rawurldecode( str_replace( ' ', '+', (string) $params['oauth_signature'] ) );
		unset( $params['oauth_signature'] );
		uksort( $params, 'strcmp' );
		$params           = $this->normalize_parameters( $params );
		$query_string     = implode( '%26', $this->join_with_equals_sign( $params ) );
		$string_to_sign   = $http_method . '&' . $base_request_uri . '&' . $query_string;
		$signature_method = (string) ( $params['oauth_signature_method'] ?? '' );
		if ( 'HMAC-SHA1' !== $signature_method && 'HMAC-SHA256' !== $signature_method ) {
			$this->set_error( $this->auth_error( 'Invalid signature - signature method is invalid.' ) );
			return false;
		}
		$hash_algorithm = strtolower( str_replace( 'HMAC-', '', $signature_method ) );
		$secret         = $user->consumer_secret . '&';
		$signature      = base64_encode( hash_hmac( $hash_algorithm, $string_to_sign, $secret, true ) ); // phpcs:ignore -- OAuth 1.0a.
		if ( ! hash_equals( $signature, $consumer_signature ) ) {
			$this->set_error( $this->auth_error( 'Invalid signature - provided signature does not match.' ) );
			return false;
		}
		return true;
	}

	private function normalize_parameters( array $parameters ): array {
		$keys   = wc_rest_urlencode_rfc3986( array_keys( $parameters ) );
		$values = wc_rest_urlencode_rfc3986( array_values( $parameters ) );
		return array_combine( $keys, $values );
	}

	/** Each `k=v` (nested: `key%5Bsub%5D=v`) encoded again. */
	private function join_with_equals_sign( array $params, array $query_params = array(), string $key = '' ): array {
		foreach ( $params as $param_key => $param_value ) {
			if ( $key ) {
				$param_key = $key . '%5B' . $param_key . '%5D';
			}
			if ( is_array( $param_value ) ) {
				$query_params = $this->join_with_equals_sign( $param_value, $query_params, $param_key );
			} else {
				$query_params[] = wc_rest_urlencode_rfc3986( $param_key . '=' . $param_value );
			}
		}
		return $query_params;
	}

	private function check_oauth_timestamp_and_nonce( object $user, string $timestamp, string $nonce ): bool {
		global $wpdb;
		$valid_window = 15 * 60;
		if ( ( (int) $timestamp < time() - $valid_window ) || ( (int) $timestamp > time() + $valid_window ) ) {
			$this->set_error( $this->auth_error( 'Invalid timestamp.' ) );
			return false;
		}
		$used_nonces = maybe_unserialize( $user->nonces );
		if ( empty( $used_nonces ) ) {
			$used_nonces = array();
		}
		if ( in_array( $nonce, $used_nonces, true ) ) {
			$this->set_error( $this->auth_error( 'Invalid nonce - nonce has already been used.' ) );
			return false;
		}
		$used_nonces[ $timestamp ] = $nonce;
		foreach ( $used_nonces as $nonce_timestamp => $used ) {
			if ( $nonce_timestamp < time() - $valid_window ) {
				unset( $used_nonces[ $nonce_timestamp ] );
			}
		}
		$wpdb->update(
			$wpdb->prefix . 'woocommerce_api_keys',
			array( 'nonces' => maybe_serialize( $used_nonces ) ),
			array( 'key_id' => $user->key_id ),
			array( '%s' ),
			array( '%d' )
		);
		return true;
	}

	/** @return object|null The key's row, found by the hash of the key. */
	private function get_user_data_by_consumer_key( string $consumer_key ) {
		global $wpdb;
		$consumer_key = wc_api_hash( sanitize_text_field( $consumer_key ) );
		return $wpdb->get_row( // phpcs:ignore WordPress.DB.DirectDatabaseQuery -- WooCommerce's own query.
			$wpdb->prepare(
				"SELECT key_id, user_id, permissions, consumer_key, consumer_secret, nonces FROM {$wpdb->prefix}woocommerce_api_keys WHERE consumer_key = %s",
				$consumer_key
			)
		);
	}

	/** @return true|WP_Error */
	private function check_permissions( string $method ) {
		$permissions = $this->user->permissions;
		switch ( $method ) {
			case 'HEAD':
			case 'GET':
				if ( 'read' !== $permissions && 'read_write' !== $permissions ) {
					return $this->auth_error( 'The API key provided does not have read permissions.' );
				}
				break;
			case 'POST':
			case 'PUT':
			case 'PATCH':
			case 'DELETE':
				if ( 'write' !== $permissions && 'read_write' !== $permissions ) {
					return $this->auth_error( 'The API key provided does not have write permissions.' );
				}
				break;
			case 'OPTIONS':
				return true;
			default:
				return $this->auth_error( 'Unknown request method.' );
		}
		return true;
	}

	/**
	 * `rest_pre_dispatch`: the key's read/write permission for the request's method.
	 *
	 * @param mixed           $result  The response so far.
	 * @param WP_REST_Server  $server  The server.
	 * @param WP_REST_Request $request The request.
	 * @return mixed
	 */
	public function check_user_permissions( $result, $server, $request ) {
		if ( $this->user ) {
			$allowed = $this->check_permissions( $request->get_method() );
			if ( is_wp_error( $allowed ) ) {
				return $allowed;
			}
		}
		return $result;
	}

	/**
	 * `rest_post_dispatch`: a failed Basic login says how to log in.
	 *
	 * @param WP_REST_Response $response The response.
	 * @return WP_REST_Response
	 */
	public function send_unauthorized_headers( $response ) {
		if ( is_wp_error( $this->error ) && 'basic_auth' === $this->auth_method ) {
			$auth_message = 'WooCommerce API. Use a consumer key in the username field and a consumer secret in the password field.';
			$response->header( 'WWW-Authenticate', 'Basic realm="' . $auth_message . '"', true );
		}
		return $response;
	}
}

new WCD_REST_Authentication();
