<?php
/**
 * WooCommerce test double: the CRUD classes the plugin and its tests touch. Objects live in
 * WordPress posts (products, variations, coupons, orders; HPOS orders as `shop_order_placehold`
 * posts, which real HPOS also keeps) and users (customers). Props sit in one post meta
 * `_wcd_data`; custom meta in ordinary post meta. Hooks fire with the names, arguments and order
 * WooCommerce uses (reference/woocommerce/NOTES.md §4).
 *
 * @package WooBrevo\Tests
 */

// phpcs:disable Generic.Files.OneObjectStructurePerFile

/** A meta entry as WC_Data::get_meta_data() returns it (and as the REST controllers put it in meta_data). */
class WC_Meta_Data implements JsonSerializable {
	/** @var int */
	public $id;
	/** @var string */
	public $key;
	/** @var mixed */
	public $value;

	public function __construct( array $meta ) {
		$this->id    = (int) ( $meta['id'] ?? 0 );
		$this->key   = (string) $meta['key'];
		$this->value = $meta['value'];
	}

	public function get_data(): array {
		return array(
			'id'    => $this->id,
			'key'   => $this->key,
			'value' => $this->value,
		);
	}

	#[\ReturnTypeWillChange]
	public function jsonSerialize() {
		return $this->get_data();
	}
}

/**
 * Base of the CRUD objects: props with change tracking, custom meta, generic get_/set_ accessors
 * (only names that exist in WooCommerce are used by the tests).
 */
abstract class WC_Data {
	protected $id          = 0;
	protected $data        = array();
	protected $changes     = array();
	protected $object_read = false;
	/** @var array<string, mixed> custom meta key => value */
	protected $meta = array();
	/** @var array<string, bool> meta keys changed since the last save (true = deleted) */
	protected $meta_dirty = array();

	public function get_id() {
		return $this->id;
	}

	public function set_id( $id ) {
		$this->id = absint( $id );
	}

	public function get_object_type() {
		return '';
	}

	protected function get_prop( $key ) {
		return array_key_exists( $key, $this->changes ) ? $this->changes[ $key ] : ( $this->data[ $key ] ?? null );
	}

	protected function set_prop( $key, $value ) {
		if ( $this->object_read ) {
			if ( array_key_exists( $key, $this->changes ) || ( $this->data[ $key ] ?? null ) !== $value ) {
				$this->changes[ $key ] = $value;
			}
		} else {
			$this->data[ $key ] = $value;
		}
	}

	public function get_changes() {
		return $this->changes;
	}

	public function apply_changes() {
		$this->data    = array_replace( $this->data, $this->changes );
		$this->changes = array();
	}

	public function set_object_read( $read = true ) {
		$this->object_read = (bool) $read;
	}

	/** set_X / get_X for props; set_billing_X / get_billing_X for address props. */
	public function __call( $name, $args ) {
		$verb = substr( $name, 0, 4 );
		$prop = substr( $name, 4 );
		foreach ( array( 'billing', 'shipping' ) as $address ) {
			if ( 0 === strpos( $prop, $address . '_' ) && array_key_exists( $address, $this->data ) ) {
				$field   = substr( $prop, strlen( $address ) + 1 );
				$current = (array) $this->get_prop( $address );
				if ( 'get_' === $verb ) {
					return $current[ $field ] ?? '';
				}
				$current[ $field ] = (string) $args[0];
				$this->set_prop( $address, $current );
				return null;
			}
		}
		if ( array_key_exists( $prop, $this->data ) ) {
			if ( 'get_' === $verb ) {
				return $this->get_prop( $prop );
			}
			if ( 'set_' === $verb ) {
				$this->set_prop( $prop, $args[0] );
				return null;
			}
		}
		throw new BadMethodCallException( static::class . '::' . $name . ' is not in the WooCommerce test double' );
	}

	public function get_meta( $key = '', $single = true, $context = 'view' ) {
		if ( ! array_key_exists( $key, $this->meta ) ) {
			return $single ? '' : array();
		}
		return $single ? $this->meta[ $key ] : array( new WC_Meta_Data( array( 'key' => $key, 'value' => $this->meta[ $key ] ) ) );
	}

	public function meta_exists( $key = '' ) {
		return array_key_exists( $key, $this->meta );
	}

	public function update_meta_data( $key, $value, $meta_id = 0 ) {
		$this->meta[ $key ]       = $value;
		$this->meta_dirty[ $key ] = false;
	}

	public function add_meta_data( $key, $value, $unique = false ) {
		$this->update_meta_data( $key, $value );
	}

	public function delete_meta_data( $key ) {
		unset( $this->meta[ $key ] );
		$this->meta_dirty[ $key ] = true;
	}

	/** @return WC_Meta_Data[] */
	public function get_meta_data() {
		$out = array();
		foreach ( $this->meta as $key => $value ) {
			$out[] = new WC_Meta_Data( array( 'id' => 0, 'key' => $key, 'value' => $value ) );
		}
		return $out;
	}

	/**
	 * Meta for REST with real meta ids: WC_Meta_Data objects, as real WooCommerce's controllers return
	 * them (rest_do_request() data holds the objects; only the JSON encoding makes {id, key, value}).
	 *
	 * @return WC_Meta_Data[]
	 */
	public function wcd_rest_meta( bool $include_protected ): array {
		$out = array();
		foreach ( $this->meta as $key => $value ) {
			if ( ! $include_protected && '_' === substr( (string) $key, 0, 1 ) ) {
				continue;
			}
			$out[] = new WC_Meta_Data(
				array(
					'id'    => $this->wcd_meta_id( (string) $key ),
					'key'   => (string) $key,
					'value' => $value,
				)
			);
		}
		return $out;
	}

	protected function wcd_meta_id( string $key ): int {
		return 0;
	}

	public function get_data() {
		return array_merge( array( 'id' => $this->id ), $this->data, $this->changes, array( 'meta_data' => $this->get_meta_data() ) );
	}
}

/**
 * Objects stored as posts.
 */
abstract class WCD_Post_Data extends WC_Data {
	/** Post fields the object maps: prop => post column. */
	protected $post_fields = array();

	abstract protected function post_type(): string;

	protected function post_status(): string {
		return (string) $this->get_prop( 'status' );
	}

	public function __construct( $id = 0 ) {
		if ( is_object( $id ) && method_exists( $id, 'get_id' ) ) {
			$id = $id->get_id();
		}
		if ( $id && is_numeric( $id ) ) {
			$this->wcd_read( (int) $id );
		}
		$this->object_read = true;
	}

	protected function wcd_read( int $id ): void {
		$post = get_post( $id );
		if ( ! $post ) {
			throw new Exception( 'Invalid ' . static::class . ' id ' . $id );
		}
		$this->id   = $id;
		$stored     = get_post_meta( $id, '_wcd_data', true );
		$this->data = array_replace( $this->data, is_array( $stored ) ? $stored : array() );
		foreach ( $this->post_fields as $prop => $column ) {
			$this->data[ $prop ] = $post->$column;
		}
		$this->wcd_read_status( $post );
		$this->data['date_created']  = $post->post_date_gmt;
		$this->data['date_modified'] = $post->post_modified_gmt;
		foreach ( get_post_meta( $id ) as $key => $values ) {
			if ( ! $this->wcd_is_internal( (string) $key ) ) {
				$this->meta[ $key ] = maybe_unserialize( $values[0] );
			}
		}
	}

	protected function wcd_read_status( WP_Post $post ): void {
		$this->data['status'] = $post->post_status;
	}

	protected function wcd_is_internal( string $key ): bool {
		return in_array( $key, array( '_wcd_data', '_edit_lock', '_edit_last', '_customer_user', '_order_total', '_wp_trash_meta_status', '_wp_trash_meta_time', '_wp_desired_post_slug', '_wp_old_slug' ), true );
	}

	protected function wcd_meta_id( string $key ): int {
		global $wpdb;
		return (int) $wpdb->get_var( $wpdb->prepare( "SELECT meta_id FROM {$wpdb->postmeta} WHERE post_id = %d AND meta_key = %s LIMIT 1", $this->id, $key ) );
	}

	/** Writes the post, props and meta; returns whether it was a create. */
	protected function wcd_persist(): bool {
		$this->apply_changes();
		$post = array(
			'post_type'   => $this->post_type(),
			'post_status' => $this->post_status(),
		);
		foreach ( $this->post_fields as $prop => $column ) {
			$post[ $column ] = $this->data[ $prop ];
		}
		$props = $this->data;
		unset( $props['date_created'], $props['date_modified'], $props['status'] );
		foreach ( array_keys( $this->post_fields ) as $prop ) {
			unset( $props[ $prop ] );
		}
		$create = 0 === $this->id;
		if ( $create ) {
			$id = wp_insert_post( wp_slash( $post ), true );
			if ( is_wp_error( $id ) ) {
				throw new Exception( $id->get_error_message() );
			}
			$this->id = (int) $id;
		} else {
			$post['ID']                = $this->id;
			$post['post_modified']     = current_time( 'mysql' );
			$post['post_modified_gmt'] = current_time( 'mysql', true );
			wp_update_post( wp_slash( $post ) );
		}
		update_post_meta( $this->id, '_wcd_data', $props );
		$this->wcd_persist_extra();
		foreach ( $this->meta_dirty as $key => $deleted ) {
			if ( $deleted ) {
				delete_post_meta( $this->id, $key );
			} else {
				update_post_meta( $this->id, $key, wp_slash( $this->meta[ $key ] ) );
			}
		}
		$this->meta_dirty = array();
		$fresh            = get_post( $this->id );
		$this->data['date_created']  = $fresh->post_date_gmt;
		$this->data['date_modified'] = $fresh->post_modified_gmt;
		return $create;
	}

	protected function wcd_persist_extra(): void {
	}
}

/**
 * Products (simple and variable share it; the type is a prop).
 */
class WC_Product extends WCD_Post_Data {
	protected $post_fields = array(
		'name'              => 'post_title',
		'description'       => 'post_content',
		'short_description' => 'post_excerpt',
		'parent_id'         => 'post_parent',
		'slug'              => 'post_name',
	);
	protected $data        = array(
		'name'               => '',
		'slug'               => '',
		'status'             => 'publish',
		'description'        => '',
		'short_description'  => '',
		'parent_id'          => 0,
		'sku'                => '',
		'regular_price'      => '',
		'sale_price'         => '',
		'manage_stock'       => false,
		'stock_quantity'     => null,
		'stock_status'       => 'instock',
		'attributes'         => array(),
		'virtual'            => false,
		'catalog_visibility' => 'visible',
		'featured'           => false,
		'total_sales'        => 0,
		'date_created'       => null,
		'date_modified'      => null,
	);

	public function get_type() {
		return 'simple';
	}

	protected function post_type(): string {
		return 'product';
	}

	public function get_object_type() {
		return 'product';
	}

	public function get_price() {
		$sale = (string) $this->get_prop( 'sale_price' );
		return '' !== $sale ? $sale : (string) $this->get_prop( 'regular_price' );
	}

	public function get_image_id() {
		return (int) get_post_thumbnail_id( $this->id );
	}

	public function get_permalink() {
		return (string) get_permalink( $this->id );
	}

	public function is_in_stock() {
		return 'outofstock' !== $this->get_prop( 'stock_status' );
	}

	public function is_on_sale() {
		return '' !== (string) $this->get_prop( 'sale_price' ) && (float) $this->get_prop( 'sale_price' ) < (float) $this->get_prop( 'regular_price' );
	}

	public function get_children() {
		return array();
	}

	protected function hook_suffix(): string {
		return 'product';
	}

	public function save() {
		$create = $this->wcd_persist();
		if ( $create ) {
			do_action( 'woocommerce_new_' . $this->hook_suffix(), $this->id, $this );
		} else {
			do_action( 'woocommerce_update_' . $this->hook_suffix(), $this->id, $this );
		}
		return $this->id;
	}

	/** WC_Product_Data_Store_CPT::delete(): force deletes, otherwise trashes. */
	public function delete( $force_delete = false ) {
		$id   = $this->id;
		$type = $this->post_type();
		if ( ! $id ) {
			return false;
		}
		if ( $force_delete ) {
			do_action( 'woocommerce_before_delete_' . $type, $id );
			wp_delete_post( $id, true );
			$this->id = 0;
			do_action( 'woocommerce_delete_' . $type, $id );
		} else {
			wp_trash_post( $id );
			$this->data['status'] = 'trash';
			do_action( 'woocommerce_trash_' . $type, $id );
			$this->id = 0; // WC_Data::delete() forgets the id after a trash too.
		}
		return true;
	}
}

class WC_Product_Simple extends WC_Product {
}

class WC_Product_Variable extends WC_Product {
	public function __construct( $id = 0 ) {
		$this->data['wcd_variable'] = true;
		parent::__construct( $id );
	}

	public function get_type() {
		return 'variable';
	}

	public function get_children() {
		if ( ! $this->id ) {
			return array();
		}
		return array_map(
			'intval',
			get_posts(
				array(
					'post_type'   => 'product_variation',
					'post_parent' => $this->id,
					'post_status' => array( 'publish', 'private' ),
					'fields'      => 'ids',
					'numberposts' => -1,
					'orderby'     => 'ID',
					'order'       => 'ASC',
				)
			)
		);
	}
}

class WC_Product_Variation extends WC_Product_Simple {
	public function get_type() {
		return 'variation';
	}

	protected function post_type(): string {
		return 'product_variation';
	}

	protected function hook_suffix(): string {
		return 'product_variation';
	}
}

/**
 * Coupons.
 */
class WC_Coupon extends WCD_Post_Data {
	protected $post_fields = array(
		'code'        => 'post_title',
		'description' => 'post_excerpt',
	);
	protected $data        = array(
		'code'          => '',
		'description'   => '',
		'status'        => 'publish',
		'amount'        => '0',
		'discount_type' => 'fixed_cart',
		'usage_count'   => 0,
		'individual_use' => false,
		'date_expires'  => null,
		'date_created'  => null,
		'date_modified' => null,
	);

	public function __construct( $data = '' ) {
		if ( is_string( $data ) && '' !== $data && ! is_numeric( $data ) ) {
			$found = get_posts(
				array(
					'post_type'   => 'shop_coupon',
					'title'       => $data,
					'fields'      => 'ids',
					'numberposts' => 1,
					'post_status' => 'any',
				)
			);
			$data  = $found ? (int) $found[0] : 0;
		}
		parent::__construct( $data );
	}

	protected function post_type(): string {
		return 'shop_coupon';
	}

	public function get_object_type() {
		return 'coupon';
	}

	public function set_code( $code ) {
		$this->set_prop( 'code', wc_format_coupon_code( $code ) );
	}

	public function save() {
		$create = $this->wcd_persist();
		do_action( $create ? 'woocommerce_new_coupon' : 'woocommerce_update_coupon', $this->id, $this );
		return $this->id;
	}

	public function delete( $force_delete = false ) {
		$id = $this->id;
		if ( $force_delete ) {
			wp_delete_post( $id, true );
			$this->id = 0;
			do_action( 'woocommerce_delete_coupon', $id );
		} else {
			wp_trash_post( $id );
			$this->data['status'] = 'trash';
			do_action( 'woocommerce_trash_coupon', $id );
			$this->id = 0; // WC_Data::delete() forgets the id after a trash too.
		}
		return true;
	}
}

/**
 * Orders and refunds. Under HPOS the double keeps them as `shop_order_placehold` posts and fires
 * no post hooks of type shop_order, as real HPOS does; under posts storage they are `shop_order` posts.
 */
abstract class WC_Abstract_Order extends WCD_Post_Data {
	protected $data = array(
		'parent_id'            => 0,
		'status'               => 'pending',
		'currency'             => 'EUR',
		'customer_id'          => 0,
		'billing'              => array(
			'first_name' => '',
			'last_name'  => '',
			'company'    => '',
			'address_1'  => '',
			'address_2'  => '',
			'city'       => '',
			'state'      => '',
			'postcode'   => '',
			'country'    => '',
			'email'      => '',
			'phone'      => '',
		),
		'shipping'             => array(
			'first_name' => '',
			'last_name'  => '',
			'company'    => '',
			'address_1'  => '',
			'address_2'  => '',
			'city'       => '',
			'state'      => '',
			'postcode'   => '',
			'country'    => '',
			'phone'      => '',
		),
		'total'                => '0',
		'discount_total'       => '0',
		'shipping_total'       => '0',
		'payment_method'       => '',
		'payment_method_title' => '',
		'transaction_id'       => '',
		'customer_ip_address'  => '',
		'customer_user_agent'  => '',
		'created_via'          => '',
		'customer_note'        => '',
		'order_key'            => '',
		'line_items'           => array(),
		'date_paid'            => null,
		'date_completed'       => null,
		'amount'               => '0',
		'reason'               => '',
		'date_created'         => null,
		'date_modified'        => null,
	);
	protected $post_fields = array( 'parent_id' => 'post_parent' );

	protected function post_status(): string {
		$status = (string) $this->get_prop( 'status' );
		return in_array( $status, array( 'trash', 'draft', 'auto-draft' ), true ) ? $status : 'wc-' . $status;
	}

	protected function wcd_read_status( WP_Post $post ): void {
		$this->data['status'] = 0 === strpos( $post->post_status, 'wc-' ) ? substr( $post->post_status, 3 ) : $post->post_status;
	}

	protected function wcd_persist_extra(): void {
		update_post_meta( $this->id, '_customer_user', (int) $this->data['customer_id'] );
		update_post_meta( $this->id, '_order_total', (string) $this->data['total'] );
	}

	public function get_object_type() {
		return 'order';
	}
}

class WC_Order extends WC_Abstract_Order {
	/** @var array{from:string,to:string}|null */
	protected $status_transition = null;

	public function get_type() {
		return 'shop_order';
	}

	protected function post_type(): string {
		return wcd_hpos_enabled() ? 'shop_order_placehold' : 'shop_order';
	}

	public function set_status( $new_status, $note = '', $manual = false ) {
		$new_status = 0 === strpos( (string) $new_status, 'wc-' ) ? substr( (string) $new_status, 3 ) : (string) $new_status;
		$old        = (string) $this->get_prop( 'status' );
		$this->set_prop( 'status', $new_status );
		// WC_Order::set_status(): a transition is recorded once the object is read, keeping the first "from".
		if ( $this->object_read && '' !== $old && $old !== $new_status ) {
			$this->status_transition = array(
				'from' => $this->status_transition['from'] ?? $old,
				'to'   => $new_status,
			);
		}
		return array(
			'from' => $old,
			'to'   => $new_status,
		);
	}

	public function get_status( $context = 'view' ) {
		return (string) $this->get_prop( 'status' );
	}

	public function add_product( $product, $qty = 1 ) {
		$items   = (array) $this->get_prop( 'line_items' );
		$items[] = array(
			'id'           => count( $items ) + 1,
			'name'         => $product->get_name(),
			'product_id'   => 'variation' === $product->get_type() ? (int) $product->get_parent_id() : (int) $product->get_id(),
			'variation_id' => 'variation' === $product->get_type() ? (int) $product->get_id() : 0,
			'quantity'     => (int) $qty,
			'price'        => (float) $product->get_price(),
			'sku'          => (string) $product->get_sku(),
		);
		$this->set_prop( 'line_items', $items );
		return count( $items );
	}

	public function calculate_totals( $and_taxes = true ) {
		$total = 0.0;
		foreach ( (array) $this->get_prop( 'line_items' ) as $item ) {
			$total += $item['price'] * $item['quantity'];
		}
		$total += (float) $this->get_prop( 'shipping_total' ) - (float) $this->get_prop( 'discount_total' );
		$this->set_prop( 'total', wc_format_decimal( $total, 2 ) );
		return $total;
	}

	public function get_refunds() {
		if ( ! $this->id ) {
			return array();
		}
		$ids = get_posts(
			array(
				'post_type'   => 'shop_order_refund',
				'post_parent' => $this->id,
				'post_status' => 'any',
				'fields'      => 'ids',
				'numberposts' => -1,
				'orderby'     => 'ID',
				'order'       => 'DESC',
			)
		);
		return array_map( static fn( $id ) => new WC_Order_Refund( (int) $id ), $ids );
	}

	public function get_total_refunded() {
		$sum = 0.0;
		foreach ( $this->get_refunds() as $refund ) {
			$sum += (float) $refund->get_amount();
		}
		return $sum;
	}

	public function get_remaining_refund_amount() {
		return wc_format_decimal( (float) $this->get_total() - $this->get_total_refunded(), 2 );
	}

	/** WC_Order::payment_complete(): the transaction id, the paid date, processing, saved. */
	public function payment_complete( $transaction_id = '' ) {
		if ( ! $this->id || ! in_array( $this->get_status(), array( 'on-hold', 'pending', 'failed', 'cancelled' ), true ) ) {
			return false;
		}
		if ( '' !== (string) $transaction_id ) {
			$this->set_prop( 'transaction_id', (string) $transaction_id );
		}
		$this->set_prop( 'date_paid', gmdate( 'Y-m-d H:i:s' ) );
		$this->set_status( 'processing' );
		$this->save();
		do_action( 'woocommerce_payment_complete', $this->id, $transaction_id );
		return true;
	}

	public function update_status( $new_status, $note = '', $manual = false ) {
		if ( ! $this->id ) {
			return false;
		}
		$this->set_status( $new_status, $note, $manual );
		$this->save();
		return true;
	}

	/** Abstract_WC_Order::save() then WC_Order::status_transition(). */
	public function save() {
		$previous = (string) ( $this->data['status'] ?? '' );
		if ( '' === (string) $this->get_prop( 'order_key' ) ) {
			$this->set_prop( 'order_key', 'wc_order_' . wp_generate_password( 13, false ) );
		}
		$create = $this->wcd_persist();
		$draft = array( 'new', 'auto-draft', 'draft', 'checkout-draft' );
		if ( $create ) {
			// HPOS create() skips drafts; posts storage fires it always (NOTES §4).
			if ( ! wcd_hpos_enabled() || ! in_array( $this->data['status'], $draft, true ) ) {
				do_action( 'woocommerce_new_order', $this->id, $this );
			}
		} elseif ( in_array( $previous, $draft, true ) && ! in_array( $this->data['status'], $draft, true ) ) {
			do_action( 'woocommerce_new_order', $this->id, $this );
		} else {
			do_action( 'woocommerce_update_order', $this->id, $this );
		}
		do_action( 'woocommerce_after_order_object_save', $this, null );
		$this->status_transition();
		return $this->id;
	}

	protected function status_transition() {
		$transition = $this->status_transition;
		$this->status_transition = null;
		if ( ! $transition ) {
			return;
		}
		$id = $this->id;
		do_action( 'woocommerce_order_status_' . $transition['to'], $id, $this, $transition );
		do_action( 'woocommerce_order_status_' . $transition['from'] . '_to_' . $transition['to'], $id, $this );
		do_action( 'woocommerce_order_status_changed', $id, $transition['from'], $transition['to'], $this );
		if ( in_array( $transition['from'], array( 'pending', 'failed' ), true ) && in_array( $transition['to'], wc_get_is_paid_statuses(), true ) ) {
			do_action( 'woocommerce_order_payment_status_changed', $id, $this );
		}
	}

	/** Trash (default) or delete; HPOS and posts storage fire the same woocommerce_* hooks. */
	public function delete( $force_delete = false ) {
		$id = $this->id;
		if ( ! $id ) {
			return false;
		}
		if ( $force_delete ) {
			do_action( 'woocommerce_before_delete_order', $id, $this );
			wp_delete_post( $id, true );
			$this->id = 0;
			do_action( 'woocommerce_delete_order', $id );
			return true;
		}
		do_action( 'woocommerce_before_trash_order', $id, $this );
		if ( wcd_hpos_enabled() ) {
			global $wpdb;
			update_post_meta( $id, '_wp_trash_meta_status', 'wc-' . $this->data['status'] );
			$wpdb->update( $wpdb->posts, array( 'post_status' => 'trash' ), array( 'ID' => $id ) );
			clean_post_cache( $id );
		} else {
			wp_trash_post( $id );
		}
		$this->data['status'] = 'trash';
		do_action( 'woocommerce_trash_order', $id );
		$this->id = 0; // WC_Data::delete() forgets the id after a trash too.
		return true;
	}

	/** WC_Order::untrash(): HPOS fires woocommerce_untrash_order before restoring the status. */
	public function untrash() {
		$id       = $this->id;
		$previous = (string) get_post_meta( $id, '_wp_trash_meta_status', true );
		if ( wcd_hpos_enabled() ) {
			do_action( 'woocommerce_untrash_order', $id, $previous );
			global $wpdb;
			$wpdb->update( $wpdb->posts, array( 'post_status' => $previous ? $previous : 'wc-pending' ), array( 'ID' => $id ) );
			delete_post_meta( $id, '_wp_trash_meta_status' );
			clean_post_cache( $id );
		} else {
			wp_untrash_post( $id );
		}
		$this->wcd_read( $id );
		return true;
	}
}

class WC_Order_Refund extends WC_Abstract_Order {
	public function get_type() {
		return 'shop_order_refund';
	}

	protected function post_type(): string {
		return 'shop_order_refund';
	}

	public function save() {
		$this->wcd_persist();
		return $this->id;
	}
}

/**
 * Customers are users; WC_Customer_Data_Store's create/update/delete order of hooks.
 */
class WC_Customer extends WC_Data {
	protected $data = array(
		'email'              => '',
		'first_name'         => '',
		'last_name'          => '',
		'display_name'       => '',
		'username'           => '',
		'role'               => 'customer',
		'password'           => '',
		'is_paying_customer' => false,
		'billing'            => array(
			'first_name' => '',
			'last_name'  => '',
			'company'    => '',
			'address_1'  => '',
			'address_2'  => '',
			'city'       => '',
			'postcode'   => '',
			'country'    => '',
			'state'      => '',
			'email'      => '',
			'phone'      => '',
		),
		'shipping'           => array(
			'first_name' => '',
			'last_name'  => '',
			'company'    => '',
			'address_1'  => '',
			'address_2'  => '',
			'city'       => '',
			'postcode'   => '',
			'country'    => '',
			'state'      => '',
			'phone'      => '',
		),
		'date_created'       => null,
		'date_modified'      => null,
	);

	/** WordPress and WooCommerce user meta that is not custom meta. */
	private const INTERNAL = array( 'nickname', 'first_name', 'last_name', 'description', 'rich_editing', 'syntax_highlighting', 'comment_shortcuts', 'admin_color', 'use_ssl', 'show_admin_bar_front', 'locale', 'dismissed_wp_pointers', 'last_update', 'paying_customer', 'session_tokens', 'primary_blog', 'source_domain' );

	public function __construct( $id = 0 ) {
		if ( $id ) {
			$user = get_userdata( (int) $id );
			if ( ! $user ) {
				throw new Exception( 'Invalid customer.' );
			}
			$this->id                         = (int) $id;
			$this->data['email']              = $user->user_email;
			$this->data['username']           = $user->user_login;
			$this->data['display_name']       = $user->display_name;
			$this->data['role']               = $user->roles ? (string) reset( $user->roles ) : '';
			$this->data['first_name']         = (string) get_user_meta( $id, 'first_name', true );
			$this->data['last_name']          = (string) get_user_meta( $id, 'last_name', true );
			$this->data['is_paying_customer'] = (bool) get_user_meta( $id, 'paying_customer', true );
			$this->data['date_created']       = $user->user_registered;
			$updated                          = (int) get_user_meta( $id, 'last_update', true );
			$this->data['date_modified']      = $updated ? gmdate( 'Y-m-d H:i:s', $updated ) : $user->user_registered;
			foreach ( array( 'billing', 'shipping' ) as $address ) {
				foreach ( array_keys( $this->data[ $address ] ) as $field ) {
					$this->data[ $address ][ $field ] = (string) get_user_meta( $id, $address . '_' . $field, true );
				}
			}
			foreach ( get_user_meta( $id ) as $key => $values ) {
				if ( ! $this->wcd_is_internal( (string) $key ) ) {
					$this->meta[ $key ] = maybe_unserialize( $values[0] );
				}
			}
		}
		$this->object_read = true;
	}

	private function wcd_is_internal( string $key ): bool {
		global $wpdb;
		return in_array( $key, self::INTERNAL, true ) || 0 === strpos( $key, 'billing_' ) || 0 === strpos( $key, 'shipping_' )
			|| 0 === strpos( $key, $wpdb->base_prefix ) || 0 === strpos( $key, 'wc_' ) || 0 === strpos( $key, '_woocommerce_persistent_cart' );
	}

	protected function wcd_meta_id( string $key ): int {
		global $wpdb;
		return (int) $wpdb->get_var( $wpdb->prepare( "SELECT umeta_id FROM {$wpdb->usermeta} WHERE user_id = %d AND meta_key = %s LIMIT 1", $this->id, $key ) );
	}

	public function get_object_type() {
		return 'customer';
	}

	public function save() {
		$this->apply_changes();
		$create = 0 === $this->id;
		if ( $create ) {
			$email = (string) $this->data['email'];
			$login = '' !== $this->data['username'] ? $this->data['username'] : sanitize_user( current( explode( '@', $email ) ), true );
			$id    = wp_insert_user(
				wp_slash(
					array(
						'user_login' => $login,
						'user_email' => $email,
						'user_pass'  => '' !== $this->data['password'] ? $this->data['password'] : wp_generate_password(),
						'role'       => $this->data['role'],
						'first_name' => $this->data['first_name'],
						'last_name'  => $this->data['last_name'],
					)
				)
			);
			if ( is_wp_error( $id ) ) {
				throw new Exception( $id->get_error_message() );
			}
			$this->id               = (int) $id;
			$this->data['username'] = $login;
		}
		$this->wcd_write_meta();
		// WC_Customer_Data_Store::create() and update() both go through wp_update_user (profile_update).
		wp_update_user(
			wp_slash(
				array(
					'ID'         => $this->id,
					'user_email' => $this->data['email'],
					'first_name' => $this->data['first_name'],
					'last_name'  => $this->data['last_name'],
				)
			)
		);
		$this->data['password'] = '';
		do_action( $create ? 'woocommerce_new_customer' : 'woocommerce_update_customer', $this->id, $this );
		return $this->id;
	}

	private function wcd_write_meta(): void {
		foreach ( array( 'billing', 'shipping' ) as $address ) {
			foreach ( $this->data[ $address ] as $field => $value ) {
				update_user_meta( $this->id, $address . '_' . $field, wp_slash( $value ) );
			}
		}
		update_user_meta( $this->id, 'paying_customer', $this->data['is_paying_customer'] ? 1 : 0 );
		update_user_meta( $this->id, 'last_update', time() );
		foreach ( $this->meta_dirty as $key => $deleted ) {
			if ( $deleted ) {
				delete_user_meta( $this->id, $key );
			} else {
				update_user_meta( $this->id, $key, wp_slash( $this->meta[ $key ] ) );
			}
		}
		$this->meta_dirty = array();
	}

	public function delete( $force_delete = false ) {
		$id = $this->id;
		if ( ! $id ) {
			return false;
		}
		if ( ! function_exists( 'wp_delete_user' ) ) {
			require_once ABSPATH . 'wp-admin/includes/user.php';
		}
		wp_delete_user( $id );
		$this->id = 0;
		do_action( 'woocommerce_delete_customer', $id );
		return true;
	}

	public function get_order_count() {
		return wcd_customer_orders( $this->id, false );
	}

	public function get_total_spent() {
		return wcd_customer_orders( $this->id, true );
	}
}
