<?php
/**
 * Builds event payloads at ship time with WooCommerce's own REST controllers (an internal
 * rest_do_request, as WooCommerce's webhooks do), so the body is what GET /wc/v3/... returns.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * REST v3 bodies for outbox rows, plus mapped protected meta and customer totals.
 */
final class WooBrevo_Payloads {

	/** Most objects one collection request asks for (WooCommerce's `per_page` maximum). */
	public const MAX_PER_PAGE = 100;

	/** Order fields about the payment, never shipped: the agent maps none of them (docs/privacy.md). `order_key` opens the order's pages. */
	public const PAYMENT_FIELDS = array( 'payment_method_title', 'transaction_id', 'payment_url', 'customer_ip_address', 'customer_user_agent', 'order_key' );

	/** Fields holding the catalogue's own codes (an EAN-13 can pass the Luhn check): never taken for a card number. */
	public const CATALOGUE_FIELDS = array( 'sku', 'global_unique_id' );

	/**
	 * The payment rule (agent/core/minimize.py holds the same; docs/privacy.md explains it): a
	 * meta key is cut into words, and one of these words makes it a payment key wherever it stands.
	 */
	private const PAYMENT_WORDS = array(
		'pay', 'payment', 'payments', 'payer', 'payee', 'payout', 'payouts', 'transaction', 'transactions', 'txn', 'charge', 'charges', 'chargeback', 'capture', 'captured', 'authorization', 'intent', 'intents', 'intention', 'mandate', 'mandates', 'receipt', 'gateway', 'refundable',
		'card', 'cards', 'creditcard', 'cc', 'cvv', 'cvc', 'cvv2', 'last4', 'iban', 'sepa', 'bic', 'bank', 'routing', 'ach',
		'token', 'tokens', 'secret', 'secrets', 'fingerprint', 'nonce',
		'stripe', 'paypal', 'ppcp', 'ppec', 'wcpay', 'woopayments', 'mollie', 'braintree', 'authnet', 'authorizenet', 'klarna', 'kco', 'afterpay', 'clearpay', 'affirm', 'adyen', 'razorpay', 'sofort', 'giropay', 'bancontact', 'przelewy24', 'sezzle', 'skrill', 'bluesnap', 'eway', 'opayo', 'sagepay', 'worldpay', 'mercadopago', 'paystack',
	);

	/** Two neighbouring words that make a payment key together. */
	private const PAYMENT_PAIRS = array( 'account number', 'account four', 'routing number', 'sort code', 'source id', 'billing agreement', 'authorize net', 'last four', 'last 4', 'order key', 'customer profile' );

	/** Gateways whose name is also an everyday word: payment keys when the key begins with it (after `wc_`). */
	private const LEADING_GATEWAYS = array( 'square', 'amazon', 'authorize', 'elavon', 'cybersource', 'moneris', 'heartland' );

	/** Words beginning with "pay" that are not payment data. */
	private const NOT_PAY = array( 'payload', 'payloads', 'paying' );

	/** Words a gateway id often ends in: the id without them (its stem) prefixes its keys too. */
	private const GENERIC_ID_WORDS = array( 'gateway', 'payment', 'payments', 'pay', 'credit', 'card', 'cc', 'checkout', 'method' );

	/** Words of a meta key whose value is a barcode (products): never taken for a card number. */
	private const BARCODE_WORDS = array( 'gtin', 'ean', 'upc', 'isbn', 'barcode', 'mpn', 'jan' );

	/** What replaces a card-like number in a shipped string. */
	public const REMOVED = '[removed]';

	/**
	 * The REST v3 body for an outbox row. Deleted objects give ['id' => N] (+ 'parent_id' for
	 * variations). Returns null if the object vanished before shipping (the shipper then ships it
	 * as deleted).
	 *
	 * @param array $row        A claimed outbox row (resource, resource_id, topic, extra).
	 * @param array $watch_meta Meta keys per resource from the agent's `welcome`.
	 * @return array|null
	 * @throws RuntimeException When the REST request fails for another reason than a missing object
	 *                          (for example the payload user cannot read it): the row stays.
	 */
	public function build( array $row, array $watch_meta ): ?array {
		$resource = (string) $row['resource'];
		$id       = (int) $row['resource_id'];
		$extra    = isset( $row['extra'] ) && is_array( $row['extra'] ) ? $row['extra'] : array();
		if ( 'cart' === $resource ) {
			return WooBrevo_Carts::stored_snapshot( $id ); // Taken in the shopper's request: no REST route has carts.
		}
		if ( 'privacy' === $resource ) {
			return WooBrevo_Privacy::erase_payload( $id, $extra );
		}
		if ( str_ends_with( (string) $row['topic'], '.deleted' ) ) {
			$body = array( 'id' => $id );
			if ( 'variation' === $resource && ! empty( $extra['parent_id'] ) ) {
				$body['parent_id'] = (int) $extra['parent_id'];
			}
			return $body;
		}
		$route = $this->route( $resource, $id, $extra );
		if ( null === $route ) {
			return null;
		}
		list( $status, $data ) = $this->rest_get( $route );
		if ( 404 === $status ) {
			return null;
		}
		if ( $status >= 300 || ! is_array( $data ) ) {
			$code = is_array( $data ) && isset( $data['code'] ) ? (string) $data['code'] : 'unknown';
			/* translators: 1: REST route, 2: the payload user's id, 3: HTTP status, 4: the REST error code. */
			throw new RuntimeException( sprintf( __( 'GET %1$s as user %2$d: HTTP %3$d %4$s', 'woobrevo' ), $route, $this->payload_user(), $status, $code ) );
		}
		return $this->complete( $data, $resource, $id, $watch_meta );
	}

	/**
	 * The bodies of several rows, each exactly what build() returns for it, with one collection
	 * request (`GET /wc/v3/orders?include=…`, variations per parent product) per resource and
	 * up to MAX_PER_PAGE objects instead of one request per row. An object the collection does
	 * not list (trashed, not a member of this site, gone, or a collection the payload user may
	 * not read) is built alone with build(), so each row gets what build() gives it.
	 *
	 * @param array<int|string, array> $rows       Claimed outbox rows.
	 * @param array                    $watch_meta Meta keys per resource from the agent's `welcome`.
	 * @return array<int|string, array|Throwable|null> Keyed like $rows: the body, null when the
	 *                                                  object vanished, or what build() threw.
	 */
	public function build_many( array $rows, array $watch_meta ): array {
		$out     = array();
		$wanted  = array(); // Collection route => object id => row keys.
		$kind_of = array(); // Collection route => resource.
		foreach ( $rows as $key => $row ) {
			$resource = (string) $row['resource'];
			$id       = (int) $row['resource_id'];
			try {
				if ( 'cart' === $resource || 'privacy' === $resource || str_ends_with( (string) $row['topic'], '.deleted' ) ) {
					$out[ $key ] = $this->build( $row, $watch_meta );
					continue;
				}
				$extra = isset( $row['extra'] ) && is_array( $row['extra'] ) ? $row['extra'] : array();
				$route = $this->route( $resource, $id, $extra );
			} catch ( Throwable $e ) {
				$out[ $key ] = $e;
				continue;
			}
			if ( null === $route ) {
				$out[ $key ] = null;
				continue;
			}
			$collection                     = substr( $route, 0, (int) strrpos( $route, '/' ) );
			$wanted[ $collection ][ $id ][] = $key;
			$kind_of[ $collection ]         = $resource;
			$out[ $key ]                    = null; // Set below; keeps the keys in the order of $rows.
		}

		$previous = get_current_user_id();
		wp_set_current_user( $this->payload_user() );
		try {
			foreach ( $wanted as $collection => $objects ) {
				$resource = $kind_of[ $collection ];
				foreach ( array_chunk( array_keys( $objects ), self::MAX_PER_PAGE ) as $ids ) {
					try {
						$listed = $this->rest_list( $collection, $ids, $resource );
					} catch ( Throwable $e ) {
						$listed = array(); // Each object is then built alone, as before.
					}
					foreach ( $ids as $id ) {
						$keys = $objects[ $id ];
						try {
							$body = isset( $listed[ $id ] )
								? $this->complete( $listed[ $id ], $resource, $id, $watch_meta )
								: $this->build( $rows[ $keys[0] ], $watch_meta ); // Not listed: alone, as before.
						} catch ( Throwable $e ) {
							$body = $e;
						}
						foreach ( $keys as $key ) {
							$out[ $key ] = $body;
						}
					}
				}
			}
		} finally {
			wp_set_current_user( $previous );
		}
		return $out;
	}

	/**
	 * Lists objects by id through a collection route, as the current user, with the query the
	 * single-object route answers the same way (no `_fields`, context `view`).
	 *
	 * @param string $collection Collection route (`/wc/v3/orders`, `/wc/v3/products/7/variations`).
	 * @param int[]  $ids        At most MAX_PER_PAGE ids.
	 * @param string $resource   Resource of the route.
	 * @return array<int, array> Bodies (with `_links`) by id; empty when the request failed.
	 */
	private function rest_list( string $collection, array $ids, string $resource ): array {
		$request = new WP_REST_Request( 'GET', $collection );
		$query   = array(
			'include'  => array_map( 'intval', $ids ),
			'per_page' => count( $ids ),
			'page'     => 1,
			'orderby'  => 'include',
		);
		if ( 'customer' === $resource ) {
			$query['role'] = 'all'; // The collection lists only the `customer` role by default.
		}
		$request->set_query_params( $query );
		$response = rest_do_request( $request );
		if ( $response->is_error() || 200 !== (int) $response->get_status() ) {
			return array();
		}
		$items  = rest_get_server()->response_to_data( $response, false );
		$asked  = array_flip( $ids );
		$found  = array();
		foreach ( is_array( $items ) ? $items : array() as $item ) {
			if ( is_array( $item ) && isset( $item['id'] ) && isset( $asked[ (int) $item['id'] ] ) ) {
				$found[ (int) $item['id'] ] = $item;
			}
		}
		return $found;
	}

	/**
	 * Adds what the REST body lacks: watched protected meta, and the totals of a customer.
	 *
	 * @param array  $data       REST body.
	 * @param string $resource   Resource.
	 * @param int    $id         Object id.
	 * @param array  $watch_meta Meta keys per resource.
	 * @return array
	 */
	private function complete( array $data, string $resource, int $id, array $watch_meta ): array {
		$data = self::add_consent( $data, $resource, $id );
		$data = $this->add_protected_meta( $data, $resource, $id, self::keys_for( $watch_meta, $resource ) );
		$data = self::minimized( $data, $resource );
		if ( 'customer' === $resource && function_exists( 'wc_get_customer_order_count' ) ) {
			// The wc/v2 names; wc/v3 customer objects carry neither (NOTES §5).
			$data['orders_count'] = (int) wc_get_customer_order_count( $id );
			$data['total_spent']  = (string) wc_get_customer_total_spent( $id );
			$data                 = self::without_count_caches( $data, self::keys_for( $watch_meta, $resource ) );
		}
		return $data;
	}

	/**
	 * The body without payment details (minimization, docs/privacy.md): an order loses its
	 * PAYMENT_FIELDS; every object loses the meta_data entries whose key is payment meta
	 * (is_payment_meta: by its words, by the order's own gateway, by every gateway registered in
	 * WooCommerce; watched or not, at any depth); any card-like number left in a string value
	 * becomes REMOVED, except in the catalogue's own codes. The agent strips them again before
	 * its inbox.
	 *
	 * @param array  $data     REST body.
	 * @param string $resource Resource.
	 * @return array
	 */
	public static function minimized( array $data, string $resource ): array {
		if ( 'order' === $resource ) {
			foreach ( self::PAYMENT_FIELDS as $field ) {
				unset( $data[ $field ] );
			}
		}
		$data = self::without_payment_meta( $data, self::registered_gateway_ids() );
		return self::without_card_numbers( $data );
	}

	/**
	 * The ids of the payment gateways registered in WooCommerce (enabled or not): their keys are
	 * payment meta on every object, a customer's included. Empty when WooCommerce cannot list them.
	 *
	 * @return string[]
	 */
	public static function registered_gateway_ids(): array {
		if ( ! function_exists( 'WC' ) || ! is_object( WC() ) || ! method_exists( WC(), 'payment_gateways' ) ) {
			return array();
		}
		try {
			$gateways = WC()->payment_gateways()->payment_gateways();
		} catch ( Throwable $e ) {
			return array(); // A gateway that fails to load: the order's own gateway and the words still apply.
		}
		$ids = array();
		foreach ( (array) $gateways as $gateway ) {
			if ( is_object( $gateway ) && isset( $gateway->id ) && is_string( $gateway->id ) && '' !== $gateway->id ) {
				$ids[] = $gateway->id;
			}
		}
		return array_values( array_unique( $ids ) );
	}

	/**
	 * Whether a meta key is payment data: one of its words names a payment concept (or begins or
	 * ends with "pay"), two neighbouring words do, it begins with a gateway whose name is an
	 * everyday word, or it begins with the id (or the id's stem) of one of $gateways.
	 *
	 * @param mixed    $key      Meta key.
	 * @param string[] $gateways Gateway ids.
	 * @return bool
	 */
	public static function is_payment_meta( $key, array $gateways = array() ): bool {
		if ( ! is_string( $key ) || '' === $key ) {
			return false;
		}
		if ( array() !== self::payment_words( $key ) ) {
			return true;
		}
		$flat = self::flat( $key );
		$bare = str_starts_with( $flat, 'wc_' ) ? substr( $flat, 3 ) : $flat;
		foreach ( $gateways as $gateway ) {
			foreach ( self::gateway_prefixes( (string) $gateway ) as $prefix ) {
				foreach ( array( $flat, $bare ) as $candidate ) {
					if ( $candidate === $prefix || str_starts_with( $candidate, $prefix . '_' ) ) {
						return true;
					}
				}
			}
		}
		return false;
	}

	/**
	 * The words (or word pairs, or leading gateway name) that make a key payment meta; empty when none.
	 *
	 * @param string $key Meta key.
	 * @return string[]
	 */
	public static function payment_words( string $key ): array {
		static $cache = array();
		if ( isset( $cache[ $key ] ) ) {
			return $cache[ $key ];
		}
		$words = self::words( $key );
		$found = array();
		foreach ( $words as $i => $word ) {
			$pay = strlen( $word ) > 3 && ( str_starts_with( $word, 'pay' ) || str_ends_with( $word, 'pay' ) ) && ! in_array( $word, self::NOT_PAY, true );
			if ( $pay || in_array( $word, self::PAYMENT_WORDS, true ) ) {
				$found[] = $word;
			}
			if ( isset( $words[ $i + 1 ] ) && in_array( $word . ' ' . $words[ $i + 1 ], self::PAYMENT_PAIRS, true ) ) {
				$found[] = $word . '_' . $words[ $i + 1 ];
			}
		}
		$first = ( isset( $words[0], $words[1] ) && 'wc' === $words[0] ) ? $words[1] : ( $words[0] ?? '' );
		if ( in_array( $first, self::LEADING_GATEWAYS, true ) ) {
			$found[] = $first;
		}
		if ( strlen( $key ) <= 255 && count( $cache ) < 4096 ) {
			$cache[ $key ] = $found; // Keys repeat from object to object; keep the cache bounded.
		}
		return $found;
	}

	/**
	 * The key prefixes of a gateway id: the id and its stem, 3 characters or more
	 * (`wcd_card` gives `wcd_card` and `wcd`; `ppcp-gateway` gives `ppcp_gateway` and `ppcp`).
	 *
	 * @param string $gateway_id Gateway id.
	 * @return string[]
	 */
	public static function gateway_prefixes( string $gateway_id ): array {
		$flat  = self::flat( substr( $gateway_id, 0, 100 ) );
		$words = '' === $flat ? array() : explode( '_', $flat );
		while ( $words && in_array( $words[0], array( 'wc', 'woocommerce' ), true ) ) {
			array_shift( $words );
		}
		$stem = $words;
		while ( $stem && in_array( end( $stem ), self::GENERIC_ID_WORDS, true ) ) {
			array_pop( $stem );
		}
		$out = array();
		foreach ( array( $flat, implode( '_', $words ), implode( '_', $stem ) ) as $prefix ) {
			if ( strlen( $prefix ) >= 3 ) {
				$out[ $prefix ] = true;
			}
		}
		return array_keys( $out );
	}

	/**
	 * A key's words: cut at every character but letters and digits, and at camelCase humps, lower case.
	 *
	 * @param string $key Key.
	 * @return string[]
	 */
	private static function words( string $key ): array {
		$split = (string) preg_replace( '/(?<=[a-z0-9])(?=[A-Z])/', '_', $key );
		$words = preg_split( '/[^a-z0-9]+/', strtolower( $split ), -1, PREG_SPLIT_NO_EMPTY );
		return is_array( $words ) ? $words : array();
	}

	/**
	 * A key or a gateway id as compared with each other: lower case, its runs of letters and
	 * digits joined by `_` (not cut at humps: `NorthWind` is the id of `_northwind_ref`).
	 *
	 * @param string $text Key or id.
	 * @return string
	 */
	private static function flat( string $text ): string {
		$words = preg_split( '/[^a-z0-9]+/', strtolower( $text ), -1, PREG_SPLIT_NO_EMPTY );
		return is_array( $words ) ? implode( '_', $words ) : '';
	}

	/**
	 * An array without the payment meta entries of any `meta_data` list in it, at any depth (an
	 * order's line items have theirs). An array's own `payment_method` adds that gateway for
	 * everything inside it.
	 *
	 * @param array    $data     Array.
	 * @param string[] $gateways Gateway ids whose keys are payment meta.
	 * @return array
	 */
	private static function without_payment_meta( array $data, array $gateways ): array {
		if ( isset( $data['payment_method'] ) && is_string( $data['payment_method'] ) && '' !== $data['payment_method'] ) {
			$gateways[] = $data['payment_method'];
		}
		foreach ( $data as $key => $value ) {
			if ( ! is_array( $value ) ) {
				continue;
			}
			if ( 'meta_data' === $key ) {
				$kept = array();
				foreach ( $value as $meta ) {
					$entry = $meta instanceof JsonSerializable ? $meta->jsonSerialize() : $meta;
					if ( ! is_array( $entry ) || ! self::is_payment_meta( $entry['key'] ?? null, $gateways ) ) {
						$kept[] = $meta;
					}
				}
				$data[ $key ] = $kept;
				continue;
			}
			$data[ $key ] = self::without_payment_meta( $value, $gateways );
		}
		return $data;
	}

	/**
	 * A value with every card-like number in its strings replaced by REMOVED: 13-19 digits, single
	 * spaces or dashes allowed between them, passing the Luhn check, not part of a longer word (a
	 * run of digits inside a hex token or a hash is no card: a cart's random token lost its
	 * middle this way, tests/chaos). Meta objects are read as the
	 * {id, key, value} they encode to; other objects are kept as they are. The catalogue's codes
	 * stay: CATALOGUE_FIELDS, and the value of a meta entry whose key names a barcode.
	 *
	 * @param mixed $value Value.
	 * @param bool  $code  Whether $value is one of the catalogue's codes.
	 * @return mixed
	 */
	public static function without_card_numbers( $value, bool $code = false ) {
		if ( is_string( $value ) ) {
			if ( $code || ! preg_match( '/[0-9]{4}/', $value ) ) {
				return $value; // Cheap exit: no run of digits long enough to start a card number.
			}
			return (string) preg_replace_callback(
				'/(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])/',
				static function ( array $m ): string {
					return self::luhn( (string) preg_replace( '/[^0-9]/', '', $m[0] ) ) ? self::REMOVED : $m[0];
				},
				$value
			);
		}
		if ( $value instanceof JsonSerializable && ! is_array( $value ) ) {
			$encoded = $value->jsonSerialize();
			if ( is_array( $encoded ) && self::has_card_number( $encoded ) ) {
				return self::without_card_numbers( $encoded );
			}
			return $value;
		}
		if ( is_array( $value ) ) {
			$barcode = isset( $value['key'] ) && is_string( $value['key'] ) && array_intersect( self::words( $value['key'] ), self::BARCODE_WORDS );
			foreach ( $value as $key => $item ) {
				$is_code       = in_array( $key, self::CATALOGUE_FIELDS, true ) || ( $barcode && in_array( $key, array( 'value', 'display_value' ), true ) );
				$value[ $key ] = self::without_card_numbers( $item, $is_code );
			}
		}
		return $value;
	}

	/**
	 * Whether a value holds a card-like number somewhere in its strings.
	 *
	 * @param mixed $value Value.
	 * @return bool
	 */
	private static function has_card_number( $value ): bool {
		return self::without_card_numbers( $value ) !== $value;
	}

	/**
	 * The Luhn check of a string of digits.
	 *
	 * @param string $digits Digits only.
	 * @return bool
	 */
	public static function luhn( string $digits ): bool {
		$sum    = 0;
		$double = false;
		for ( $i = strlen( $digits ) - 1; $i >= 0; $i-- ) {
			$digit = (int) $digits[ $i ];
			if ( $double ) {
				$digit *= 2;
				if ( $digit > 9 ) {
					$digit -= 9;
				}
			}
			$sum   += $digit;
			$double = ! $double;
		}
		return 0 === $sum % 10;
	}

	/**
	 * Adds the consent record (`_woobrevo_consent`) to an order's or a customer's meta_data when
	 * there is one and the REST body lacks it (the customer controller hides `_` keys), whatever
	 * the agent watches: the agent's consent mode reads it (docs/privacy.md).
	 *
	 * @param array  $data     REST body.
	 * @param string $resource Resource.
	 * @param int    $id       Object id.
	 * @return array
	 */
	private static function add_consent( array $data, string $resource, int $id ): array {
		if ( 'order' !== $resource && 'customer' !== $resource ) {
			return $data;
		}
		foreach ( (array) ( $data['meta_data'] ?? array() ) as $meta ) {
			$key = $meta instanceof JsonSerializable ? ( $meta->jsonSerialize()['key'] ?? '' ) : ( is_array( $meta ) ? ( $meta['key'] ?? '' ) : '' );
			if ( WooBrevo_Consent::META_KEY === $key ) {
				return $data; // The order controller lists `_` keys that are not props: there already.
			}
		}
		$entry = WooBrevo_Consent::meta_entry( $resource, $id );
		if ( null !== $entry ) {
			$data['meta_data'][] = $entry;
		}
		return $data;
	}

	/**
	 * Drops WooCommerce's cached order count and money spent from a customer's meta_data. Since
	 * WooCommerce 9.x they are per-site user meta (`wc_order_count_{prefix}`, `wc_money_spent_{prefix}`)
	 * that its REST controller does not hide, written by the first count: the same customer would
	 * ship without them, then with them. orders_count and total_spent carry the values; a watched key stays.
	 *
	 * @param array    $data    Customer body.
	 * @param string[] $watched Watched keys.
	 * @return array
	 */
	private static function without_count_caches( array $data, array $watched ): array {
		if ( empty( $data['meta_data'] ) || ! is_array( $data['meta_data'] ) ) {
			return $data;
		}
		$kept = array();
		foreach ( $data['meta_data'] as $meta ) {
			$key = $meta instanceof JsonSerializable ? ( $meta->jsonSerialize()['key'] ?? '' ) : ( is_array( $meta ) ? ( $meta['key'] ?? '' ) : '' );
			if ( preg_match( '/^wc_(order_count|money_spent)_/', (string) $key ) && ! in_array( $key, $watched, true ) ) {
				continue;
			}
			$kept[] = $meta;
		}
		$data['meta_data'] = $kept;
		return $data;
	}

	/**
	 * The REST route of an object, or null when a variation's parent cannot be found.
	 *
	 * @param string $resource Resource.
	 * @param int    $id       Object id.
	 * @param array  $extra    Row extras (parent_id for variations).
	 * @return string|null
	 * @throws InvalidArgumentException For an unknown resource.
	 */
	public function route( string $resource, int $id, array $extra = array() ): ?string {
		switch ( $resource ) {
			case 'customer':
			case 'order':
			case 'product':
			case 'coupon':
				return '/wc/v3/' . $resource . 's/' . $id;
			case 'variation':
				$parent = (int) wp_get_post_parent_id( $id );
				if ( $parent <= 0 ) {
					$parent = (int) ( $extra['parent_id'] ?? 0 );
				}
				return $parent > 0 ? '/wc/v3/products/' . $parent . '/variations/' . $id : null;
		}
		throw new InvalidArgumentException( 'unknown resource: ' . $resource );
	}

	/**
	 * Runs an internal GET as the payload user; returns [status, data with _links].
	 *
	 * @param string $route REST route.
	 * @return array{0:int,1:mixed}
	 */
	public function rest_get( string $route ): array {
		$previous = get_current_user_id();
		wp_set_current_user( $this->payload_user() );
		try {
			$response = rest_do_request( new WP_REST_Request( 'GET', $route ) );
			$data     = rest_get_server()->response_to_data( $response, false );
			return array( (int) $response->get_status(), $data );
		} finally {
			wp_set_current_user( $previous );
		}
	}

	/**
	 * The configured payload user, or the first user who can manage WooCommerce (a super admin in a network).
	 *
	 * @return int
	 */
	public function payload_user(): int {
		$user_id = (int) WooBrevo_Settings::get( 'payload_user' );
		if ( $user_id > 0 && get_userdata( $user_id ) ) {
			return $user_id;
		}
		foreach ( array( 'manage_woocommerce', 'manage_options' ) as $cap ) {
			$users = get_users(
				array(
					'capability' => $cap,
					'number'     => 1,
					'orderby'    => 'ID',
					'fields'     => 'ID',
				)
			);
			if ( $users ) {
				return (int) $users[0];
			}
		}
		if ( is_multisite() ) {
			foreach ( get_super_admins() as $login ) {
				$user = get_user_by( 'login', $login );
				if ( $user ) {
					return (int) $user->ID;
				}
			}
		}
		return 0;
	}

	/**
	 * The watched keys of a resource (variations fall back to the product list).
	 *
	 * @param array  $watch_meta Meta keys per resource.
	 * @param string $resource   Resource.
	 * @return string[]
	 */
	private static function keys_for( array $watch_meta, string $resource ): array {
		if ( 'variation' === $resource && ! isset( $watch_meta['variation'] ) ) {
			$resource = 'product';
		}
		return isset( $watch_meta[ $resource ] ) && is_array( $watch_meta[ $resource ] ) ? array_map( 'strval', $watch_meta[ $resource ] ) : array();
	}

	/**
	 * Adds watched keys that REST hides (protected, `_`-prefixed) to meta_data as {key, value}.
	 *
	 * @param array    $data     REST body.
	 * @param string   $resource Resource.
	 * @param int      $id       Object id.
	 * @param string[] $keys     Watched keys.
	 * @return array
	 */
	private function add_protected_meta( array $data, string $resource, int $id, array $keys ): array {
		if ( ! $keys ) {
			return $data;
		}
		$present = array();
		foreach ( (array) ( $data['meta_data'] ?? array() ) as $meta ) {
			if ( $meta instanceof JsonSerializable ) {
				$meta = $meta->jsonSerialize(); // WooCommerce's controllers return WC_Meta_Data objects.
			}
			if ( is_array( $meta ) && isset( $meta['key'] ) ) {
				$present[ (string) $meta['key'] ] = true;
			}
		}
		$object = null;
		foreach ( $keys as $key ) {
			if ( isset( $present[ $key ] ) ) {
				continue;
			}
			if ( 'customer' === $resource ) {
				if ( ! metadata_exists( 'user', $id, $key ) ) {
					continue;
				}
				$value = get_user_meta( $id, $key, true );
			} else {
				if ( null === $object ) {
					$object = 'order' === $resource ? wc_get_order( $id ) : ( 'coupon' === $resource ? new WC_Coupon( $id ) : wc_get_product( $id ) );
				}
				if ( ! $object || ! $object->meta_exists( $key ) ) {
					continue;
				}
				$value = $object->get_meta( $key, true );
			}
			$data['meta_data'][] = array(
				'key'   => $key,
				'value' => $value,
			);
		}
		return $data;
	}
}
