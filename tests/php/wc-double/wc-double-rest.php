<?php
/**
 * WooCommerce test double: GET routes for single objects under wc/v3, and their collections
 * filtered by `include` (with `per_page`, `page`, `orderby`, `order`, and `role` for customers;
 * `exclude`, `modified_after` and `dates_are_gmt` for the others, as the agent's poller sends them),
 * with WooCommerce's permission checks and error codes. Bodies start from real WooCommerce 10.0.2 responses
 * (templates/, copied from tests/fixtures/woocommerce/real-10.0.2/rest/) so every key is there,
 * and the fields the double models are overwritten with the stored object. templates/product.json is
 * 35-product_create_simple without permalink_template and generated_slug: that was a POST answer
 * (context `edit`); a GET (context `view`, as rest_do_request() and webhooks use) has neither key.
 *
 * @package WooBrevo\Tests
 */

defined( 'ABSPATH' ) || exit;

function wcd_register_rest_routes(): void {
	$routes = array(
		'/customers/(?P<id>[\d]+)'                             => array( 'customer', 'list_users' ),
		'/orders/(?P<id>[\d]+)'                                => array( 'order', 'read_private_shop_orders' ),
		'/products/(?P<id>[\d]+)'                              => array( 'product', 'read_private_products' ),
		'/products/(?P<product_id>[\d]+)/variations/(?P<id>[\d]+)' => array( 'variation', 'read_private_products' ),
		'/coupons/(?P<id>[\d]+)'                               => array( 'coupon', 'read_private_shop_coupons' ),
	);
	foreach ( $routes as $route => list( $resource, $cap ) ) {
		register_rest_route(
			'wc/v3',
			$route,
			array(
				'methods'             => 'GET',
				'callback'            => static function ( WP_REST_Request $request ) use ( $resource ) {
					return wcd_rest_get( $resource, $request );
				},
				'permission_callback' => static function () use ( $cap ) {
					if ( ! current_user_can( $cap ) ) {
						return new WP_Error( 'woocommerce_rest_cannot_view', 'Sorry, you cannot view this resource.', array( 'status' => rest_authorization_required_code() ) );
					}
					return true;
				},
				'args'                => array( 'id' => array( 'type' => 'integer' ) ),
			)
		);
		// The collection: the same route without its last `/(?P<id>…)`.
		register_rest_route(
			'wc/v3',
			substr( $route, 0, (int) strrpos( $route, '/' ) ),
			array(
				'methods'             => 'GET',
				'callback'            => static function ( WP_REST_Request $request ) use ( $resource ) {
					return wcd_rest_list( $resource, $request );
				},
				'permission_callback' => static function () use ( $cap ) {
					if ( ! current_user_can( $cap ) ) {
						return new WP_Error( 'woocommerce_rest_cannot_view', 'Sorry, you cannot list resources.', array( 'status' => rest_authorization_required_code() ) );
					}
					return true;
				},
				'args'                => wcd_collection_params( $resource ),
			)
		);
	}
}

/**
 * The collection parameters the double reads, validated like WooCommerce's (per_page 1–100:
 * more is a 400 rest_invalid_param). Customers order by name ascending and list the `customer`
 * role by default; the post-backed resources by date descending.
 */
function wcd_collection_params( string $resource ): array {
	$customer = 'customer' === $resource;
	$params   = array(
		'page'     => array(
			'type'    => 'integer',
			'default' => 1,
			'minimum' => 1,
		),
		'per_page' => array(
			'type'    => 'integer',
			'default' => 10,
			'minimum' => 1,
			'maximum' => 100,
		),
		'include'  => array(
			'type'    => 'array',
			'items'   => array( 'type' => 'integer' ),
			'default' => array(),
		),
		'order'    => array(
			'type'    => 'string',
			'default' => $customer ? 'asc' : 'desc',
			'enum'    => array( 'asc', 'desc' ),
		),
		'orderby'  => array(
			'type'    => 'string',
			'default' => $customer ? 'name' : 'date',
			'enum'    => $customer ? array( 'id', 'include', 'name', 'registered_date' ) : array( 'date', 'id', 'include', 'title', 'slug', 'modified' ),
		),
	);
	if ( $customer ) {
		$params['role'] = array(
			'type'    => 'string',
			'default' => 'customer',
		);
		return $params;
	}
	// WC_REST_CRUD_Controller's: what the agent's poller sends (docs/backfill.md, "Polling").
	$params['exclude']        = array(
		'type'              => 'array',
		'items'             => array( 'type' => 'integer' ),
		'default'           => array(),
		'sanitize_callback' => 'wp_parse_id_list',
	);
	$params['modified_after'] = array(
		'type'              => 'string',
		'format'            => 'date-time',
		'validate_callback' => 'rest_validate_request_arg',
	);
	$params['dates_are_gmt']  = array(
		'type'    => 'boolean',
		'default' => false,
	);
	return $params;
}

/**
 * A collection page: WP_User_Query for customers, a posts query for the rest (priming the post
 * and meta caches, as WP_Query in WooCommerce's CPT data stores does), trashed and auto-draft objects left
 * out (WooCommerce's default status `any`), each item what the single route returns, with its
 * `_links` as WP_REST_Controller::prepare_response_for_collection() adds them.
 */
function wcd_rest_list( string $resource, WP_REST_Request $request ) {
	$per_page = (int) $request['per_page'];
	$page     = (int) $request['page'];
	$include  = array_values( array_filter( array_map( 'intval', (array) $request['include'] ) ) );
	$orderby  = (string) $request['orderby'];
	$order    = strtoupper( (string) $request['order'] );
	if ( 'customer' === $resource ) {
		$args = array(
			'number'  => $per_page,
			'paged'   => $page,
			'order'   => $order,
			'orderby' => array(
				'id'              => 'ID',
				'include'         => 'include',
				'name'            => 'display_name',
				'registered_date' => 'registered',
			)[ $orderby ],
			'fields'  => 'ID',
		);
		if ( $include ) {
			$args['include'] = $include;
		}
		if ( 'all' !== $request['role'] ) {
			$args['role'] = (string) $request['role'];
		}
		$query = new WP_User_Query( $args );
		$ids   = array_map( 'intval', (array) $query->get_results() );
		$total = (int) $query->get_total();
	} else {
		$types = array(
			'order'     => array( 'shop_order', 'shop_order_placehold' ),
			'product'   => array( 'product' ),
			'variation' => array( 'product_variation' ),
			'coupon'    => array( 'shop_coupon' ),
		)[ $resource ];
		// The data stores' query, in SQL: the double's order statuses are not registered post
		// statuses, which WP_Query would drop.
		global $wpdb;
		$where = $wpdb->prepare( 'post_type IN (' . implode( ',', array_fill( 0, count( $types ), '%s' ) ) . ") AND post_status NOT IN ('trash', 'auto-draft')", $types );
		if ( $include ) {
			$where .= ' AND ID IN (' . implode( ',', $include ) . ')';
		}
		if ( 'variation' === $resource ) {
			$where .= $wpdb->prepare( ' AND post_parent = %d', (int) $request['product_id'] );
		}
		$exclude = array_values( array_filter( array_map( 'intval', (array) $request['exclude'] ) ) );
		if ( $exclude ) {
			$where .= ' AND ID NOT IN (' . implode( ',', $exclude ) . ')';
		}
		if ( isset( $request['modified_after'] ) ) {
			// WooCommerce's `date_query` (prepare_objects_query): exclusive, to the second.
			$column = $request['dates_are_gmt'] ? 'post_modified_gmt' : 'post_modified';
			$dates  = new WP_Date_Query(
				array(
					array(
						'column' => $column,
						'after'  => (string) $request['modified_after'],
					),
				),
				$column
			);
			$where .= $dates->get_sql();
		}
		$sort = array(
			'date'     => "post_date {$order}, ID {$order}",
			'id'       => "ID {$order}",
			'include'  => 'FIELD(ID, ' . implode( ',', $include ? $include : array( 0 ) ) . ')',
			'title'    => "post_title {$order}",
			'slug'     => "post_name {$order}",
			'modified' => "post_modified {$order}, ID {$order}",
		)[ $orderby ];
		$ids   = array_map( 'intval', $wpdb->get_col( "SELECT ID FROM {$wpdb->posts} WHERE {$where} ORDER BY {$sort} LIMIT " . ( ( $page - 1 ) * $per_page ) . ', ' . $per_page ) ); // phpcs:ignore -- built from integers and prepared parts.
		$total = (int) $wpdb->get_var( "SELECT COUNT(*) FROM {$wpdb->posts} WHERE {$where}" ); // phpcs:ignore -- as above.
		// As WP_Query does for a page of posts: their rows and meta in two queries.
		_prime_post_caches( $ids, false, true );
	}
	$items = array();
	foreach ( $ids as $id ) {
		$item = wcd_rest_item( $resource, (int) $id, (int) $request['product_id'] );
		if ( is_wp_error( $item ) ) {
			continue; // What the single route would not return either.
		}
		$data           = $item->get_data();
		$links          = WP_REST_Server::get_compact_response_links( $item );
		$data['_links'] = $links;
		$items[]        = $data;
	}
	$response = rest_ensure_response( $items );
	$response->header( 'X-WP-Total', (string) $total );
	$response->header( 'X-WP-TotalPages', (string) (int) ceil( $total / max( 1, $per_page ) ) );
	return $response;
}

function wcd_template( string $name ): array {
	static $cache = array();
	if ( ! isset( $cache[ $name ] ) ) {
		$cache[ $name ] = json_decode( (string) file_get_contents( __DIR__ . '/templates/' . $name . '.json' ), true );
	}
	return $cache[ $name ];
}

/** WooCommerce's date pair: site-local and GMT, ISO 8601 without zone. */
function wcd_dates( array &$body, string $field, ?string $gmt ): void {
	if ( ! $gmt || '0000-00-00 00:00:00' === $gmt ) {
		$body[ $field ]          = null;
		$body[ $field . '_gmt' ] = null;
		return;
	}
	$body[ $field ]          = str_replace( ' ', 'T', get_date_from_gmt( $gmt ) );
	$body[ $field . '_gmt' ] = str_replace( ' ', 'T', $gmt );
}

function wcd_rest_error( string $code, string $message, int $status ): WP_Error {
	return new WP_Error( $code, $message, array( 'status' => $status ) );
}

function wcd_rest_get( string $resource, WP_REST_Request $request ) {
	return wcd_rest_item( $resource, (int) $request['id'], (int) $request['product_id'] );
}

/** One object as its single route returns it (a variation only under its parent $parent). */
function wcd_rest_item( string $resource, int $id, int $parent ) {
	switch ( $resource ) {
		case 'customer':
			$user = $id ? get_userdata( $id ) : false;
			if ( ! $user || ( is_multisite() && ! is_user_member_of_blog( $id ) && ! current_user_can( 'manage_network_users' ) ) ) {
				return wcd_rest_error( 'wc_user_invalid_id', 'Invalid user ID.', 404 );
			}
			$body  = wcd_customer_body( new WC_Customer( $id ) );
			$links = array( 'customers/' . $id, 'customers', null );
			break;
		case 'order':
			$order = wc_get_order( $id );
			if ( ! $order || 'shop_order' !== $order->get_type() ) {
				return wcd_rest_error( 'woocommerce_rest_shop_order_invalid_id', 'Invalid ID.', 404 );
			}
			$body  = wcd_order_body( $order );
			$links = array( 'orders/' . $id, 'orders', null );
			break;
		case 'product':
			$product = wc_get_product( $id );
			if ( ! $product || 'variation' === $product->get_type() ) {
				return wcd_rest_error( 'woocommerce_rest_product_invalid_id', 'Invalid ID.', 404 );
			}
			$body  = wcd_product_body( $product );
			$links = array( 'products/' . $id, 'products', null );
			break;
		case 'variation':
			$variation = wc_get_product( $id );
			if ( ! $variation || 'variation' !== $variation->get_type() || (int) $variation->get_parent_id() !== $parent ) {
				return wcd_rest_error( 'woocommerce_rest_product_variation_invalid_id', 'Invalid ID.', 404 );
			}
			$body  = wcd_variation_body( $variation );
			$links = array( 'products/' . $parent . '/variations/' . $id, 'products/' . $parent . '/variations', 'products/' . $parent );
			break;
		default:
			$post = $id ? get_post( $id ) : null;
			if ( ! $post || 'shop_coupon' !== $post->post_type ) {
				return wcd_rest_error( 'woocommerce_rest_shop_coupon_invalid_id', 'Invalid ID.', 404 );
			}
			$body  = wcd_coupon_body( new WC_Coupon( $id ) );
			$links = array( 'coupons/' . $id, 'coupons', null );
	}
	$response = rest_ensure_response( $body );
	$response->add_link( 'self', rest_url( 'wc/v3/' . $links[0] ), array( 'targetHints' => array( 'allow' => array( 'GET', 'POST', 'PUT', 'PATCH', 'DELETE' ) ) ) );
	$response->add_link( 'collection', rest_url( 'wc/v3/' . $links[1] ) );
	if ( $links[2] ) {
		$response->add_link( 'up', rest_url( 'wc/v3/' . $links[2] ) );
	}
	return $response;
}

function wcd_customer_body( WC_Customer $c ): array {
	$body = wcd_template( 'customer' );
	unset( $body['_links'] );
	$body['id'] = $c->get_id();
	wcd_dates( $body, 'date_created', $c->get_date_created() );
	wcd_dates( $body, 'date_modified', $c->get_date_modified() );
	foreach ( array( 'email', 'first_name', 'last_name', 'role', 'username', 'billing', 'shipping', 'is_paying_customer' ) as $field ) {
		$body[ $field ] = $c->{'get_' . $field}();
	}
	$body['avatar_url'] = get_avatar_url( $c->get_email() );
	$body['meta_data']  = $c->wcd_rest_meta( false );
	return $body;
}

function wcd_order_body( WC_Order $o ): array {
	$body = wcd_template( 'order' );
	unset( $body['_links'] );
	$body['id'] = $o->get_id();
	foreach ( array( 'parent_id', 'status', 'currency', 'total', 'discount_total', 'shipping_total', 'customer_id', 'order_key', 'billing', 'shipping', 'payment_method', 'payment_method_title', 'transaction_id', 'customer_ip_address', 'customer_user_agent', 'created_via', 'customer_note' ) as $field ) {
		$body[ $field ] = $o->{'get_' . $field}();
	}
	$body['customer_id'] = (int) $body['customer_id'];
	$body['number']      = (string) $o->get_id();
	foreach ( array( 'date_created', 'date_modified', 'date_completed', 'date_paid' ) as $field ) {
		wcd_dates( $body, $field, $o->{'get_' . $field}() );
	}
	$body['line_items'] = array();
	foreach ( (array) $o->get_line_items() as $item ) {
		$line                 = wcd_template( 'order' )['line_items'][0];
		$line['id']           = (int) $item['id'];
		$line['name']         = (string) $item['name'];
		$line['product_id']   = (int) $item['product_id'];
		$line['variation_id'] = (int) $item['variation_id'];
		$line['quantity']     = (int) $item['quantity'];
		$line['subtotal']     = wc_format_decimal( $item['price'] * $item['quantity'], 2 );
		$line['total']        = $line['subtotal'];
		$line['sku']          = (string) $item['sku'];
		$line['price']        = (float) $item['price'];
		$line['meta_data']    = array();
		$body['line_items'][] = $line;
	}
	$body['coupon_lines']   = array();
	$body['shipping_lines'] = array();
	$body['refunds']        = array();
	foreach ( $o->get_refunds() as $refund ) {
		$body['refunds'][] = array(
			'id'     => $refund->get_id(),
			'reason' => (string) $refund->get_reason(),
			'total'  => wc_format_decimal( -(float) $refund->get_amount(), 2 ),
		);
	}
	$body['meta_data']        = $o->wcd_rest_meta( true );
	$body['needs_payment']    = in_array( $o->get_status(), array( 'pending', 'failed' ), true );
	$body['needs_processing'] = true;
	$body['is_editable']      = in_array( $o->get_status(), array( 'pending', 'on-hold', 'auto-draft' ), true );
	$body['payment_url']      = home_url( '/checkout/order-pay/' . $o->get_id() . '/?pay_for_order=true&key=' . $o->get_order_key() );
	return $body;
}

function wcd_product_fields( array $body, WC_Product $p ): array {
	$body['id']   = $p->get_id();
	$body['name'] = (string) $p->get_name();
	foreach ( array( 'description', 'sku', 'regular_price', 'sale_price', 'manage_stock', 'stock_quantity', 'stock_status', 'status' ) as $field ) {
		$body[ $field ] = $p->{'get_' . $field}();
	}
	$body['price']     = (string) $p->get_price();
	$body['on_sale']   = $p->is_on_sale();
	$body['permalink'] = home_url( '/?p=' . $p->get_id() );
	wcd_dates( $body, 'date_created', $p->get_date_created() );
	wcd_dates( $body, 'date_modified', $p->get_date_modified() );
	$body['meta_data'] = $p->wcd_rest_meta( true );
	return $body;
}

function wcd_product_body( WC_Product $p ): array {
	$body = wcd_template( 'product' );
	unset( $body['_links'] );
	$body                      = wcd_product_fields( $body, $p );
	$body['slug']              = (string) get_post_field( 'post_name', $p->get_id() );
	$body['type']              = $p->get_type();
	$body['short_description'] = (string) $p->get_short_description();
	$body['parent_id']         = 0;
	$body['variations']        = $p->get_children();
	$body['attributes']        = array();
	$body['categories']        = array();
	$body['tags']              = array();
	$body['images']            = array();
	return $body;
}

function wcd_variation_body( WC_Product_Variation $v ): array {
	$body = wcd_template( 'variation' );
	unset( $body['_links'] );
	$body               = wcd_product_fields( $body, $v );
	$body['parent_id']  = (int) $v->get_parent_id();
	$body['attributes'] = array();
	foreach ( (array) $v->get_attributes() as $name => $option ) {
		$body['attributes'][] = array(
			'id'     => 0,
			'name'   => ucfirst( (string) $name ),
			'slug'   => (string) $name,
			'option' => (string) $option,
		);
	}
	return $body;
}

function wcd_coupon_body( WC_Coupon $c ): array {
	$body = wcd_template( 'coupon' );
	unset( $body['_links'] );
	$body['id'] = $c->get_id();
	foreach ( array( 'code', 'amount', 'status', 'discount_type', 'description', 'usage_count', 'individual_use' ) as $field ) {
		$body[ $field ] = $c->{'get_' . $field}();
	}
	wcd_dates( $body, 'date_created', $c->get_date_created() );
	wcd_dates( $body, 'date_modified', $c->get_date_modified() );
	wcd_dates( $body, 'date_expires', $c->get_date_expires() );
	$body['meta_data'] = $c->wcd_rest_meta( true );
	return $body;
}
