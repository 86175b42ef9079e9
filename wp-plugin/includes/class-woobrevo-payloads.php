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
			throw new RuntimeException( sprintf( 'GET %s as user %d: HTTP %d %s', $route, $this->payload_user(), $status, $code ) );
		}
		$data = $this->add_protected_meta( $data, $resource, $id, self::keys_for( $watch_meta, $resource ) );
		if ( 'customer' === $resource && function_exists( 'wc_get_customer_order_count' ) ) {
			// The wc/v2 names; wc/v3 customer objects carry neither (NOTES §5).
			$data['orders_count'] = (int) wc_get_customer_order_count( $id );
			$data['total_spent']  = (string) wc_get_customer_total_spent( $id );
		}
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
