<?php
/**
 * Hook callbacks: each one only decides what changed and writes an outbox row. No network call,
 * no object loading beyond what the hook hands over (payloads are built at ship time).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Turns WordPress and WooCommerce hooks into outbox rows. Registered by WooBrevo_Plugin.
 */
final class WooBrevo_Capture {

	/** Order statuses that are not an order yet (WooCommerce skips them for order webhooks too). */
	private const DRAFT_STATUSES = array( 'new', 'auto-draft', 'draft', 'checkout-draft' );

	/** Post types the wp-admin paths (trash, restore, delete) can touch, and their resource. */
	private const POST_TYPES = array(
		'product'           => 'product',
		'product_variation' => 'variation',
		'shop_coupon'       => 'coupon',
		'shop_order'        => 'order',
	);

	/**
	 * Outbox the rows go to.
	 *
	 * @var WooBrevo_Outbox
	 */
	private WooBrevo_Outbox $outbox;

	/**
	 * Constructor.
	 *
	 * @param WooBrevo_Outbox|null $outbox Outbox; the current site's by default.
	 */
	public function __construct( ?WooBrevo_Outbox $outbox = null ) {
		$this->outbox = $outbox ? $outbox : new WooBrevo_Outbox();
	}

	/**
	 * Writes a row if the current site has the table (a network-activated plugin may run on a site
	 * whose install has not happened yet, or under switch_to_blog() into one without the plugin).
	 *
	 * @param string $resource Resource.
	 * @param int    $id       Object id.
	 * @param string $action   Action.
	 * @param array  $extra    Extras.
	 * @return void
	 */
	private function record( string $resource, int $id, string $action, array $extra = array() ): void {
		if ( WooBrevo_Schema::is_installed() ) {
			$this->outbox->add( $resource, $id, $action, $extra );
		}
	}

	/**
	 * The meta keys the agent's mapping reads for a resource (cached from `welcome`).
	 *
	 * @param string $resource Resource.
	 * @return string[]
	 */
	public static function watched_keys( string $resource ): array {
		$watch = get_option( WooBrevo_Options::WATCH_META, array() );
		if ( ! is_array( $watch ) ) {
			return array();
		}
		if ( 'variation' === $resource && ! isset( $watch['variation'] ) ) {
			$resource = 'product';
		}
		return isset( $watch[ $resource ] ) && is_array( $watch[ $resource ] ) ? array_map( 'strval', $watch[ $resource ] ) : array();
	}

	// ----------------------------------------------------------------------------------------
	// Customers (users are network-wide; the row goes to the site whose request changed them).

	/**
	 * Any new user (checkout, My Account, wp-admin, REST).
	 *
	 * @param int $user_id User id.
	 * @return void
	 */
	public function action_user_register( $user_id ): void {
		$this->record( 'customer', (int) $user_id, 'created' );
	}

	/**
	 * From wc_create_new_customer().
	 *
	 * @param int $customer_id Customer id.
	 * @return void
	 */
	public function action_woocommerce_created_customer( $customer_id ): void {
		$this->record( 'customer', (int) $customer_id, 'created' );
	}

	/**
	 * From WC_Customer_Data_Store::create().
	 *
	 * @param int $customer_id Customer id.
	 * @return void
	 */
	public function action_woocommerce_new_customer( $customer_id ): void {
		$this->record( 'customer', (int) $customer_id, 'created' );
	}

	/**
	 * Any profile save, including admin user-profile edits (which fire no WooCommerce hook).
	 *
	 * @param int $user_id User id.
	 * @return void
	 */
	public function action_profile_update( $user_id ): void {
		$this->record( 'customer', (int) $user_id, 'updated' );
	}

	/**
	 * Admin edits of another user's profile (fires before the save; collapses with profile_update).
	 *
	 * @param int $user_id User id.
	 * @return void
	 */
	public function action_edit_user_profile_update( $user_id ): void {
		$this->record( 'customer', (int) $user_id, 'updated' );
	}

	/**
	 * A user editing their own profile in wp-admin.
	 *
	 * @param int $user_id User id.
	 * @return void
	 */
	public function action_personal_options_update( $user_id ): void {
		$this->record( 'customer', (int) $user_id, 'updated' );
	}

	/**
	 * From WC_Customer_Data_Store::update() (checkout, My Account, REST).
	 *
	 * @param int $customer_id Customer id.
	 * @return void
	 */
	public function action_woocommerce_update_customer( $customer_id ): void {
		$this->record( 'customer', (int) $customer_id, 'updated' );
	}

	/**
	 * A user deleted (wp-admin or wp_delete_user()).
	 *
	 * @param int $user_id User id.
	 * @return void
	 */
	public function action_delete_user( $user_id ): void {
		$this->record( 'customer', (int) $user_id, 'deleted' );
	}

	/**
	 * A user deleted from the whole network.
	 *
	 * @param int $user_id User id.
	 * @return void
	 */
	public function action_wpmu_delete_user( $user_id ): void {
		$this->record( 'customer', (int) $user_id, 'deleted' );
	}

	/**
	 * From WC_Customer->delete().
	 *
	 * @param int $customer_id Customer id.
	 * @return void
	 */
	public function action_woocommerce_delete_customer( $customer_id ): void {
		$this->record( 'customer', (int) $customer_id, 'deleted' );
	}

	/**
	 * A watched user meta key was added.
	 *
	 * @param int    $meta_id  Meta id.
	 * @param int    $user_id  User id.
	 * @param string $meta_key Key.
	 * @return void
	 */
	public function action_added_user_meta( $meta_id, $user_id, $meta_key ): void {
		$this->user_meta_changed( (int) $user_id, (string) $meta_key );
	}

	/**
	 * A watched user meta key was changed.
	 *
	 * @param int    $meta_id  Meta id.
	 * @param int    $user_id  User id.
	 * @param string $meta_key Key.
	 * @return void
	 */
	public function action_updated_user_meta( $meta_id, $user_id, $meta_key ): void {
		$this->user_meta_changed( (int) $user_id, (string) $meta_key );
	}

	/**
	 * A watched user meta key was deleted.
	 *
	 * @param int[]  $meta_ids Meta ids.
	 * @param int    $user_id  User id.
	 * @param string $meta_key Key.
	 * @return void
	 */
	public function action_deleted_user_meta( $meta_ids, $user_id, $meta_key ): void {
		$this->user_meta_changed( (int) $user_id, (string) $meta_key );
	}

	/**
	 * User meta changes are noisy (one call per key): only watched keys count, and the consent
	 * record (every customer payload carries it).
	 *
	 * @param int    $user_id User id.
	 * @param string $key     Meta key.
	 * @return void
	 */
	private function user_meta_changed( int $user_id, string $key ): void {
		if ( WooBrevo_Consent::META_KEY === $key || in_array( $key, self::watched_keys( 'customer' ), true ) ) {
			$this->record( 'customer', $user_id, 'updated' );
		}
	}

	// ----------------------------------------------------------------------------------------
	// Orders (HPOS and posts storage fire the same woocommerce_* hooks; wp-admin post paths below).

	/**
	 * Whether a hook's order argument is a real order out of draft (not a refund, not a checkout draft).
	 *
	 * @param mixed $order Order object if the hook passed one.
	 * @return bool
	 */
	private static function is_live_order( $order ): bool {
		if ( ! is_object( $order ) ) {
			return true;
		}
		if ( method_exists( $order, 'get_type' ) && 'shop_order' !== $order->get_type() ) {
			return false;
		}
		return ! ( method_exists( $order, 'get_status' ) && in_array( $order->get_status(), self::DRAFT_STATUSES, true ) );
	}

	/**
	 * An order was created (or left a draft status).
	 *
	 * @param int   $order_id Order id.
	 * @param mixed $order    Order (WooCommerce ≥ 6.x passes it).
	 * @return void
	 */
	public function action_woocommerce_new_order( $order_id, $order = null ): void {
		if ( self::is_live_order( $order ) ) {
			$this->record( 'order', (int) $order_id, 'created' );
		}
	}

	/**
	 * An order was saved (also HPOS order meta changes, which save the order).
	 *
	 * @param int   $order_id Order id.
	 * @param mixed $order    Order.
	 * @return void
	 */
	public function action_woocommerce_update_order( $order_id, $order = null ): void {
		if ( self::is_live_order( $order ) ) {
			$this->record( 'order', (int) $order_id, 'updated' );
		}
	}

	/**
	 * Every status transition, with from/to (no `wc-` prefix). Leaving a draft status is a creation.
	 *
	 * @param int    $order_id Order id.
	 * @param string $from     Old status.
	 * @param string $to       New status.
	 * @return void
	 */
	public function action_woocommerce_order_status_changed( $order_id, $from, $to ): void {
		$from   = (string) $from;
		$to     = (string) $to;
		$action = in_array( $from, self::DRAFT_STATUSES, true ) ? 'created' : 'updated';
		if ( in_array( $to, self::DRAFT_STATUSES, true ) ) {
			return;
		}
		$this->record(
			'order',
			(int) $order_id,
			$action,
			array(
				'status_from' => $from,
				'status_to'   => $to,
			)
		);
	}

	/**
	 * A refund was created for an order.
	 *
	 * @param int $order_id  Order id.
	 * @param int $refund_id Refund id.
	 * @return void
	 */
	public function action_woocommerce_order_refunded( $order_id, $refund_id ): void {
		$this->record( 'order', (int) $order_id, 'updated', array( 'refund_id' => (int) $refund_id ) );
	}

	/**
	 * A refund was deleted.
	 *
	 * @param int $refund_id Refund id.
	 * @param int $order_id  Order id.
	 * @return void
	 */
	public function action_woocommerce_delete_order_refund( $refund_id, $order_id ): void {
		$this->record( 'order', (int) $order_id, 'updated', array( 'refund_id' => (int) $refund_id ) );
	}

	/**
	 * An order was trashed (HPOS; posts storage fires it from the CRUD delete too).
	 *
	 * @param int $order_id Order id.
	 * @return void
	 */
	public function action_woocommerce_trash_order( $order_id ): void {
		$this->record( 'order', (int) $order_id, 'deleted' );
	}

	/**
	 * An order left the trash (fires before the status is restored).
	 *
	 * @param int    $order_id        Order id.
	 * @param string $previous_status Status it goes back to.
	 * @return void
	 */
	public function action_woocommerce_untrash_order( $order_id, $previous_status = '' ): void {
		$this->record( 'order', (int) $order_id, 'restored', array( 'previous_status' => (string) $previous_status ) );
	}

	/**
	 * An order was deleted for good.
	 *
	 * @param int $order_id Order id.
	 * @return void
	 */
	public function action_woocommerce_delete_order( $order_id ): void {
		$this->record( 'order', (int) $order_id, 'deleted' );
	}

	// ----------------------------------------------------------------------------------------
	// Products and variations.

	/**
	 * Whether a product argument is a real product (wp-admin's "Add new" makes auto-drafts).
	 *
	 * @param mixed $product Product if the hook passed one.
	 * @return bool
	 */
	private static function is_live_product( $product ): bool {
		return ! ( is_object( $product ) && method_exists( $product, 'get_status' ) && in_array( $product->get_status(), array( 'auto-draft', 'new' ), true ) );
	}

	/**
	 * Extra for a variation row: its parent, so a deleted variation still ships `parent_id`.
	 *
	 * @param mixed $variation Variation object or null.
	 * @param int   $id        Variation id.
	 * @return array
	 */
	private static function variation_extra( $variation, int $id ): array {
		$parent = is_object( $variation ) && method_exists( $variation, 'get_parent_id' ) ? (int) $variation->get_parent_id() : (int) wp_get_post_parent_id( $id );
		return $parent > 0 ? array( 'parent_id' => $parent ) : array();
	}

	/**
	 * A product was created.
	 *
	 * @param int   $product_id Product id.
	 * @param mixed $product    Product.
	 * @return void
	 */
	public function action_woocommerce_new_product( $product_id, $product = null ): void {
		if ( self::is_live_product( $product ) ) {
			$this->record( 'product', (int) $product_id, 'created' );
		}
	}

	/**
	 * A product was saved (every stock change saves it too).
	 *
	 * @param int   $product_id Product id.
	 * @param mixed $product    Product.
	 * @return void
	 */
	public function action_woocommerce_update_product( $product_id, $product = null ): void {
		if ( self::is_live_product( $product ) ) {
			$this->record( 'product', (int) $product_id, 'updated' );
		}
	}

	/**
	 * A variation was created.
	 *
	 * @param int   $variation_id Variation id.
	 * @param mixed $variation    Variation.
	 * @return void
	 */
	public function action_woocommerce_new_product_variation( $variation_id, $variation = null ): void {
		$this->record( 'variation', (int) $variation_id, 'created', self::variation_extra( $variation, (int) $variation_id ) );
	}

	/**
	 * A variation was saved.
	 *
	 * @param int   $variation_id Variation id.
	 * @param mixed $variation    Variation.
	 * @return void
	 */
	public function action_woocommerce_update_product_variation( $variation_id, $variation = null ): void {
		$this->record( 'variation', (int) $variation_id, 'updated', self::variation_extra( $variation, (int) $variation_id ) );
	}

	/**
	 * Stock of a product changed (wc_update_product_stock()).
	 *
	 * @param mixed $product Product.
	 * @return void
	 */
	public function action_woocommerce_product_set_stock( $product ): void {
		if ( is_object( $product ) && method_exists( $product, 'get_id' ) ) {
			$this->record( 'product', (int) $product->get_id(), 'updated' );
		}
	}

	/**
	 * Stock of a variation changed.
	 *
	 * @param mixed $variation Variation.
	 * @return void
	 */
	public function action_woocommerce_variation_set_stock( $variation ): void {
		if ( is_object( $variation ) && method_exists( $variation, 'get_id' ) ) {
			$id = (int) $variation->get_id();
			$this->record( 'variation', $id, 'updated', self::variation_extra( $variation, $id ) );
		}
	}

	/**
	 * The wp-admin product edit screen saved (before the product save; collapses with it).
	 *
	 * @param int $post_id Product id.
	 * @return void
	 */
	public function action_woocommerce_process_product_meta( $post_id ): void {
		$this->record( 'product', (int) $post_id, 'updated' );
	}

	/**
	 * CRUD trash of a product.
	 *
	 * @param int $id Product id.
	 * @return void
	 */
	public function action_woocommerce_trash_product( $id ): void {
		$this->record( 'product', (int) $id, 'deleted' );
	}

	/**
	 * CRUD delete of a product.
	 *
	 * @param int $id Product id.
	 * @return void
	 */
	public function action_woocommerce_delete_product( $id ): void {
		$this->record( 'product', (int) $id, 'deleted' );
	}

	/**
	 * CRUD trash of a variation (the parent is still readable: the post is only trashed).
	 *
	 * @param int $id Variation id.
	 * @return void
	 */
	public function action_woocommerce_trash_product_variation( $id ): void {
		$this->record( 'variation', (int) $id, 'deleted', self::variation_extra( null, (int) $id ) );
	}

	/**
	 * Before a CRUD delete of a variation: the last moment its parent can be read.
	 *
	 * @param int $id Variation id.
	 * @return void
	 */
	public function action_woocommerce_before_delete_product_variation( $id ): void {
		$this->record( 'variation', (int) $id, 'deleted', self::variation_extra( null, (int) $id ) );
	}

	/**
	 * CRUD delete of a variation (collapses with the before-delete row, which knows the parent).
	 *
	 * @param int $id Variation id.
	 * @return void
	 */
	public function action_woocommerce_delete_product_variation( $id ): void {
		$this->record( 'variation', (int) $id, 'deleted' );
	}

	// ----------------------------------------------------------------------------------------
	// Coupons.

	/**
	 * A coupon was created.
	 *
	 * @param int $coupon_id Coupon id.
	 * @return void
	 */
	public function action_woocommerce_new_coupon( $coupon_id ): void {
		$this->record( 'coupon', (int) $coupon_id, 'created' );
	}

	/**
	 * A coupon was saved.
	 *
	 * @param int $coupon_id Coupon id.
	 * @return void
	 */
	public function action_woocommerce_update_coupon( $coupon_id ): void {
		$this->record( 'coupon', (int) $coupon_id, 'updated' );
	}

	/**
	 * The wp-admin coupon screen saved.
	 *
	 * @param int $post_id Coupon id.
	 * @return void
	 */
	public function action_woocommerce_process_shop_coupon_meta( $post_id ): void {
		$this->record( 'coupon', (int) $post_id, 'updated' );
	}

	/**
	 * CRUD trash of a coupon.
	 *
	 * @param int $id Coupon id.
	 * @return void
	 */
	public function action_woocommerce_trash_coupon( $id ): void {
		$this->record( 'coupon', (int) $id, 'deleted' );
	}

	/**
	 * CRUD delete of a coupon.
	 *
	 * @param int $id Coupon id.
	 * @return void
	 */
	public function action_woocommerce_delete_coupon( $id ): void {
		$this->record( 'coupon', (int) $id, 'deleted' );
	}

	// ----------------------------------------------------------------------------------------
	// wp-admin post paths: trash, restore and delete call WordPress core directly, not WooCommerce.

	/**
	 * Resource of a post we follow, or null. Orders only under posts storage (HPOS orders are not posts).
	 *
	 * @param int $post_id Post id.
	 * @return string|null
	 */
	private static function post_resource( int $post_id ): ?string {
		$type = get_post_type( $post_id );
		if ( ! $type || ! isset( self::POST_TYPES[ $type ] ) ) {
			return null;
		}
		if ( 'shop_order' === $type && self::hpos_enabled() ) {
			return null;
		}
		return self::POST_TYPES[ $type ];
	}

	/**
	 * Whether WooCommerce stores orders in its own tables.
	 *
	 * @return bool
	 */
	public static function hpos_enabled(): bool {
		$util = '\Automattic\WooCommerce\Utilities\OrderUtil';
		return class_exists( $util ) && $util::custom_orders_table_usage_is_enabled();
	}

	/**
	 * A post was moved to the trash.
	 *
	 * @param int $post_id Post id.
	 * @return void
	 */
	public function action_trashed_post( $post_id ): void {
		$resource = self::post_resource( (int) $post_id );
		if ( $resource ) {
			$extra = 'variation' === $resource ? self::variation_extra( null, (int) $post_id ) : array();
			$this->record( $resource, (int) $post_id, 'deleted', $extra );
		}
	}

	/**
	 * A post left the trash.
	 *
	 * @param int    $post_id         Post id.
	 * @param string $previous_status Status it goes back to.
	 * @return void
	 */
	public function action_untrashed_post( $post_id, $previous_status = '' ): void {
		$resource = self::post_resource( (int) $post_id );
		if ( $resource ) {
			$extra = array( 'previous_status' => (string) $previous_status );
			if ( 'variation' === $resource ) {
				$extra += self::variation_extra( null, (int) $post_id );
			}
			$this->record( $resource, (int) $post_id, 'restored', $extra );
		}
	}

	/**
	 * Before a post is deleted for good: the type and parent are still readable.
	 *
	 * @param int $post_id Post id.
	 * @return void
	 */
	public function action_before_delete_post( $post_id ): void {
		$resource = self::post_resource( (int) $post_id );
		if ( $resource ) {
			$extra = 'variation' === $resource ? self::variation_extra( null, (int) $post_id ) : array();
			$this->record( $resource, (int) $post_id, 'deleted', $extra );
		}
	}

	/**
	 * A watched post meta key changed (posts storage: orders, products, coupons).
	 *
	 * @param int    $meta_id  Meta id.
	 * @param int    $post_id  Post id.
	 * @param string $meta_key Key.
	 * @return void
	 */
	public function action_updated_post_meta( $meta_id, $post_id, $meta_key ): void {
		$this->post_meta_changed( (int) $post_id, (string) $meta_key );
	}

	/**
	 * A watched post meta key was added.
	 *
	 * @param int    $meta_id  Meta id.
	 * @param int    $post_id  Post id.
	 * @param string $meta_key Key.
	 * @return void
	 */
	public function action_added_post_meta( $meta_id, $post_id, $meta_key ): void {
		$this->post_meta_changed( (int) $post_id, (string) $meta_key );
	}

	/**
	 * A watched post meta key was deleted.
	 *
	 * @param int[]  $meta_ids Meta ids.
	 * @param int    $post_id  Post id.
	 * @param string $meta_key Key.
	 * @return void
	 */
	public function action_deleted_post_meta( $meta_ids, $post_id, $meta_key ): void {
		$this->post_meta_changed( (int) $post_id, (string) $meta_key );
	}

	/**
	 * Records an update when a watched key of a followed post type changed.
	 *
	 * @param int    $post_id Post id.
	 * @param string $key     Meta key.
	 * @return void
	 */
	private function post_meta_changed( int $post_id, string $key ): void {
		$watch = get_option( WooBrevo_Options::WATCH_META, array() );
		if ( ! $watch || ! is_array( $watch ) ) {
			return; // The common case: nothing watched, no post type lookup.
		}
		$resource = self::post_resource( $post_id );
		if ( $resource && in_array( $key, self::watched_keys( $resource ), true ) ) {
			$extra = 'variation' === $resource ? self::variation_extra( null, $post_id ) : array();
			$this->record( $resource, $post_id, 'updated', $extra );
		}
	}
}
