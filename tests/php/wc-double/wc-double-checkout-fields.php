<?php
/**
 * The block checkout's additional fields API, as far as WooBrevo uses it, with the storage
 * semantics of real WooCommerce 10.0.2 (src/Blocks/Domain/Services/CheckoutFields.php):
 * woocommerce_register_additional_checkout_field() (ids namespaced `ns/name`, locations
 * address|contact|order, `additional` an alias of `order`, types text|select|checkbox, a second
 * registration of an id refused with _doing_it_wrong), and the container's CheckoutFields with
 * register/deregister, is_field, get_fields_for_location, persist_field_for_order (an `order`
 * field stored as order meta `_wc_other/{id}`, a boolean as '1' or '0', after the action
 * `woocommerce_set_additional_field_value`) and get_field_from_object (a checkbox read back as
 * a boolean). The Store API checkout persists each posted `additional_fields` value this way
 * before `woocommerce_store_api_checkout_order_processed`.
 *
 * @package WooBrevo\Tests
 */

namespace Automattic\WooCommerce\Blocks\Domain\Services {

	use WC_Customer;
	use WC_Data;
	use WC_Order;

	/** The additional fields registry. */
	class CheckoutFields {
		const BILLING_FIELDS_PREFIX  = '_wc_billing/';
		const SHIPPING_FIELDS_PREFIX = '_wc_shipping/';
		const OTHER_FIELDS_PREFIX    = '_wc_other/';

		/** @var array<string, array> */
		private $additional_fields = array();

		/** @var array<string, string[]> */
		private $fields_locations = array(
			'address' => array(),
			'contact' => array(),
			'order'   => array(),
		);

		/** @return void */
		public function register_checkout_field( $options ) {
			$id = (string) ( $options['id'] ?? '' );
			if ( '' === $id || ! preg_match( '#^[^/]+/[^/]+$#', $id ) || empty( $options['label'] ) || empty( $options['location'] ) ) {
				_doing_it_wrong( 'woocommerce_register_additional_checkout_field', esc_html( 'Unable to register field with id: "' . $id . '".' ), '8.6.0' );
				return;
			}
			$location = 'additional' === $options['location'] ? 'order' : (string) $options['location'];
			$type     = (string) ( $options['type'] ?? 'text' );
			if ( ! isset( $this->fields_locations[ $location ] ) || ! in_array( $type, array( 'text', 'select', 'checkbox' ), true ) ) {
				_doing_it_wrong( 'woocommerce_register_additional_checkout_field', esc_html( 'Unable to register field with id: "' . $id . '".' ), '8.6.0' );
				return;
			}
			if ( ! empty( $this->additional_fields[ $id ] ) ) {
				_doing_it_wrong( 'woocommerce_register_additional_checkout_field', esc_html( 'Unable to register field with id: "' . $id . '". The field is already registered.' ), '8.6.0' );
				return;
			}
			$this->additional_fields[ $id ]         = array_merge(
				array(
					'hidden'   => false,
					'required' => false,
				),
				$options,
				array(
					'location' => $location,
					'type'     => $type,
				)
			);
			$this->fields_locations[ $location ][] = $id;
		}

		/** @return void */
		public function deregister_checkout_field( $field_id ) {
			if ( empty( $this->additional_fields[ $field_id ] ) ) {
				return;
			}
			$location                            = $this->additional_fields[ $field_id ]['location'];
			$this->fields_locations[ $location ] = array_values( array_diff( $this->fields_locations[ $location ], array( $field_id ) ) );
			unset( $this->additional_fields[ $field_id ] );
		}

		public function get_additional_fields() {
			return $this->additional_fields;
		}

		public function is_field( $key ) {
			return array_key_exists( $key, $this->additional_fields );
		}

		public function get_fields_for_location( $location ) {
			$location = 'additional' === $location ? 'order' : $location;
			$keys     = $this->fields_locations[ $location ] ?? array();
			return array_intersect_key( $this->additional_fields, array_flip( $keys ) );
		}

		public function persist_field_for_order( string $key, $value, WC_Order $order, string $group = 'other', bool $set_customer = true ) {
			$this->set_array_meta( $key, $value, $order, $group );
			if ( $set_customer && $order->get_customer_id() ) {
				$this->persist_field_for_customer( $key, $value, new WC_Customer( $order->get_customer_id() ), $group );
			}
		}

		public function persist_field_for_customer( string $key, $value, WC_Customer $customer, string $group = 'other' ) {
			$this->set_array_meta( $key, $value, $customer, $group );
		}

		public function get_field_from_object( string $key, WC_Data $wc_object, string $group = 'other' ) {
			$value = $wc_object->get_meta( self::group_key( $group ) . $key, true );
			if ( $this->is_field( $key ) && 'checkbox' === $this->additional_fields[ $key ]['type'] ) {
				return '1' === $value;
			}
			return null === $value ? '' : $value;
		}

		private function set_array_meta( string $key, $value, WC_Data $wc_object, string $group ) {
			do_action( 'woocommerce_set_additional_field_value', $key, $value, $group, $wc_object );
			if ( is_bool( $value ) ) {
				$value = $value ? '1' : '0'; // Data stores skip false values.
			}
			$wc_object->update_meta_data( self::group_key( $group ) . $key, $value );
		}

		private static function group_key( string $group ): string {
			if ( 'billing' === $group ) {
				return self::BILLING_FIELDS_PREFIX;
			}
			return 'shipping' === $group ? self::SHIPPING_FIELDS_PREFIX : self::OTHER_FIELDS_PREFIX;
		}
	}
}

namespace Automattic\WooCommerce\Blocks {

	use Automattic\WooCommerce\Blocks\Domain\Services\CheckoutFields;

	/** The blocks package: only its container, which holds the one CheckoutFields. */
	class Package {
		/** @var object|null */
		private static $container = null;

		public static function container() {
			if ( null === self::$container ) {
				self::$container = new class() {
					/** @var array<string, object> */
					private $services = array();

					public function get( $id ) {
						if ( CheckoutFields::class !== $id ) {
							throw new \BadMethodCallException( $id . ' is not in the WooCommerce test double' );
						}
						if ( ! isset( $this->services[ $id ] ) ) {
							$this->services[ $id ] = new CheckoutFields();
						}
						return $this->services[ $id ];
					}
				};
			}
			return self::$container;
		}
	}
}

namespace {

	use Automattic\WooCommerce\Blocks\Domain\Services\CheckoutFields;
	use Automattic\WooCommerce\Blocks\Package;

	/**
	 * Registers an additional checkout field (WooCommerce 8.9+), once `woocommerce_blocks_loaded` ran.
	 *
	 * @param array $options Field options.
	 * @return void
	 */
	function woocommerce_register_additional_checkout_field( $options ) {
		if ( ! did_action( 'woocommerce_blocks_loaded' ) ) {
			add_action(
				'woocommerce_blocks_loaded',
				static function () use ( $options ) {
					woocommerce_register_additional_checkout_field( $options );
				}
			);
			return;
		}
		Package::container()->get( CheckoutFields::class )->register_checkout_field( $options );
	}
}
