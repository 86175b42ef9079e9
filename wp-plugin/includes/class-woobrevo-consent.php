<?php
/**
 * Marketing opt-in: the optional "subscribe" box on the classic checkout, the block checkout
 * (a checkout field through WooCommerce's additional fields API, WooCommerce ≥ 8.9),
 * registration and My Account, and the consent record each choice leaves on the order and on
 * the customer (`_woobrevo_consent`, docs/privacy.md). The agent decides what a record means
 * for lists (`consent.mode`); the plugin only records what the person chose and what they saw.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * The opt-in box and the consent record.
 */
final class WooBrevo_Consent {

	/** Order and user meta key of the record; the payloads carry it as a meta_data entry. */
	public const META_KEY = '_woobrevo_consent';

	/** The block checkout's field (namespaced, as WooCommerce requires), in the `order` location. */
	public const BLOCK_FIELD = 'woobrevo/subscribe';

	/** Where WooCommerce stores an `order` location field's value on the order (its `_wc_other/` group). */
	public const BLOCK_FIELD_META = '_wc_other/' . self::BLOCK_FIELD;

	/** The forms that can show the box (the settings' choice). */
	public const FORMS = array( 'checkout', 'registration', 'my_account' );

	/** Record sources (contract: the agent reads them). */
	public const SOURCE_CLASSIC      = 'checkout_classic';
	public const SOURCE_BLOCK        = 'checkout_block';
	public const SOURCE_REGISTRATION = 'registration';
	public const SOURCE_MY_ACCOUNT   = 'my_account';

	/** The posted box, and the hidden field naming the form that showed it. */
	public const FIELD       = 'woobrevo_subscribe';
	public const FIELD_SHOWN = 'woobrevo_subscribe_shown';

	/** The agent's consent modes (the welcome's `consent.mode`). */
	public const MODES = array( 'implied', 'required' );

	/**
	 * Whether this request registered the block checkout field (the box was offered there).
	 *
	 * @var bool
	 */
	private static bool $block_field_registered = false;

	/**
	 * The classic checkout's choice, read once WooCommerce checked the checkout nonce and
	 * before an account made at checkout logs the shopper in (the nonce is the guest's).
	 *
	 * @var bool|null
	 */
	private static ?bool $classic_choice = null;

	// ----------------------------------------------------------------------------------------
	// Settings.

	/**
	 * Whether the box is on for a form of the current site.
	 *
	 * @param string $form checkout, registration or my_account.
	 * @return bool
	 */
	public static function enabled_for( string $form ): bool {
		return '1' === (string) WooBrevo_Settings::get( 'optin_enabled' ) && in_array( $form, self::forms(), true );
	}

	/**
	 * The forms the settings name (unknown names dropped).
	 *
	 * @return string[]
	 */
	public static function forms(): array {
		return array_values( array_intersect( self::FORMS, array_map( 'strval', (array) WooBrevo_Settings::get( 'optin_forms' ) ) ) );
	}

	/**
	 * The box's text: the setting, or the default when it is empty.
	 *
	 * @return string
	 */
	public static function label(): string {
		$label = trim( (string) WooBrevo_Settings::get( 'optin_label' ) );
		return '' === $label ? __( 'Email me news and offers', 'woobrevo' ) : $label;
	}

	/**
	 * Whether this WooCommerce has the blocks' additional checkout fields API (8.9 or newer).
	 *
	 * @return bool
	 */
	public static function block_checkout_supported(): bool {
		return function_exists( 'woocommerce_register_additional_checkout_field' );
	}

	/**
	 * The agent's consent mode from its last welcome (`implied` when it carried none), or ''
	 * before the first welcome.
	 *
	 * @return string
	 */
	public static function agent_mode(): string {
		$mode = (string) WooBrevo_Settings::get( 'consent_mode' );
		return in_array( $mode, self::MODES, true ) ? $mode : '';
	}

	/**
	 * Keeps a welcome's `consent` field (written only on change).
	 *
	 * @param array{mode: string} $consent From WooBrevo_Protocol::parse().
	 * @return void
	 */
	public static function remember_settings( array $consent ): void {
		$mode = in_array( $consent['mode'] ?? '', self::MODES, true ) ? (string) $consent['mode'] : '';
		if ( WooBrevo_Settings::get( 'consent_mode' ) !== $mode ) {
			WooBrevo_Settings::set( 'consent_mode', $mode );
		}
	}

	/**
	 * The plain warning the status panel shows, or '' when there is nothing to warn about.
	 *
	 * @return string
	 */
	public static function mode_warning(): string {
		if ( 'required' === self::agent_mode() && '1' !== (string) WooBrevo_Settings::get( 'optin_enabled' ) ) {
			return __( 'The agent only adds people who opted in to marketing lists (consent.mode: required), but the opt-in box is off: nobody will join your marketing lists. Turn the opt-in box on below.', 'woobrevo' );
		}
		return '';
	}

	// ----------------------------------------------------------------------------------------
	// The record.

	/**
	 * A consent record, as stored and shipped.
	 *
	 * @param bool   $subscribed Whether the box was ticked.
	 * @param string $source     One of the SOURCE_* constants.
	 * @return array{subscribed: bool, time: string, source: string, text: string}
	 */
	public static function record( bool $subscribed, string $source ): array {
		return array(
			'subscribed' => $subscribed,
			'time'       => gmdate( 'Y-m-d\TH:i:s\Z' ),
			'source'     => $source,
			'text'       => self::label(),
		);
	}

	/**
	 * A user's record, or null when they never saw the box.
	 *
	 * @param int $user_id User id.
	 * @return array|null
	 */
	public static function of_user( int $user_id ): ?array {
		if ( $user_id <= 0 ) {
			return null;
		}
		$record = get_user_meta( $user_id, self::META_KEY, true );
		return is_array( $record ) && isset( $record['subscribed'] ) ? $record : null;
	}

	/**
	 * Whether a user's record says subscribed.
	 *
	 * @param int $user_id User id.
	 * @return bool
	 */
	public static function user_subscribed( int $user_id ): bool {
		$record = self::of_user( $user_id );
		return null !== $record && true === $record['subscribed'];
	}

	/**
	 * Writes a user's record (the customer ships as updated: WooBrevo_Capture watches the key).
	 *
	 * @param int   $user_id User id.
	 * @param array $record  From record().
	 * @return void
	 */
	private static function set_user( int $user_id, array $record ): void {
		if ( $user_id > 0 ) {
			update_user_meta( $user_id, self::META_KEY, $record );
		}
	}

	/**
	 * A checkout's choice: the record on the order (not saved here), and on the customer only
	 * when ticked (an unticked checkout never unsubscribes).
	 *
	 * @param WC_Order $order      The order.
	 * @param bool     $subscribed Whether the box was ticked.
	 * @param string   $source     checkout_classic or checkout_block.
	 * @return void
	 */
	private static function record_checkout( $order, bool $subscribed, string $source ): void {
		$record = self::record( $subscribed, $source );
		$order->update_meta_data( self::META_KEY, $record );
		if ( $subscribed ) {
			self::set_user( (int) $order->get_customer_id(), $record );
		}
	}

	/**
	 * The meta_data entry a REST v3 body gets for the record, or null when there is none: the
	 * REST controllers hide `_`-prefixed keys, and the agent reads this one (contract §1).
	 *
	 * @param string $resource customer or order.
	 * @param int    $id       Object id.
	 * @return array{id: int, key: string, value: array}|null
	 */
	public static function meta_entry( string $resource, int $id ): ?array {
		global $wpdb;
		if ( 'customer' === $resource ) {
			$record = self::of_user( $id );
			if ( null === $record ) {
				return null;
			}
			$meta_id = (int) $wpdb->get_var( $wpdb->prepare( "SELECT umeta_id FROM {$wpdb->usermeta} WHERE user_id = %d AND meta_key = %s ORDER BY umeta_id DESC LIMIT 1", $id, self::META_KEY ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery -- the meta id, which get_user_meta() does not give.
			return array(
				'id'    => $meta_id,
				'key'   => self::META_KEY,
				'value' => $record,
			);
		}
		if ( 'order' !== $resource || ! function_exists( 'wc_get_order' ) ) {
			return null;
		}
		$order = wc_get_order( $id );
		if ( ! $order ) {
			return null;
		}
		foreach ( $order->get_meta_data() as $meta ) {
			$data = $meta->get_data();
			if ( self::META_KEY === $data['key'] && is_array( $data['value'] ) ) {
				return array(
					'id'    => (int) $data['id'],
					'key'   => self::META_KEY,
					'value' => $data['value'],
				);
			}
		}
		return null;
	}

	// ----------------------------------------------------------------------------------------
	// The box.

	/**
	 * The box's HTML.
	 *
	 * @param string $form    Form name (the hidden field says which form showed it).
	 * @param bool   $checked Whether it starts ticked.
	 * @param string $class   Wrapper class (WooCommerce's form-row styles).
	 * @return void
	 */
	private static function render_box( string $form, bool $checked, string $class ): void {
		?>
		<p class="<?php echo esc_attr( $class ); ?> woobrevo-optin">
			<label class="woocommerce-form__label woocommerce-form__label-for-checkbox checkbox">
				<input type="checkbox" class="woocommerce-form__input woocommerce-form__input-checkbox input-checkbox" name="<?php echo esc_attr( self::FIELD ); ?>" id="<?php echo esc_attr( self::FIELD ); ?>" value="1" <?php checked( $checked ); ?> />
				<span><?php echo esc_html( self::label() ); ?></span>
			</label>
			<input type="hidden" name="<?php echo esc_attr( self::FIELD_SHOWN ); ?>" value="<?php echo esc_attr( $form ); ?>" />
		</p>
		<?php
	}

	/**
	 * What a posted storefront form says about the box, once its own nonce (the one WooCommerce
	 * checked before the hook) is valid: null when the nonce is not, or the box was not on that
	 * form; else whether it came ticked. A shopper's form, often a guest's: no capability applies.
	 *
	 * @param string $nonce_field  The form's nonce field (`_wpnonce` also accepted, as WooCommerce does).
	 * @param string $nonce_action Its action.
	 * @param string $form         Our form name (the hidden field's value).
	 * @return bool|null
	 */
	private static function posted_choice( string $nonce_field, string $nonce_action, string $form ): ?bool {
		/*PUBLIC-FORM*/
		$nonce_field = isset( $_POST[ $nonce_field ] ) ? $nonce_field : '_wpnonce';
		$nonce       = isset( $_POST[ $nonce_field ] ) ? sanitize_text_field( wp_unslash( $_POST[ $nonce_field ] ) ) : '';
		if ( '' === $nonce || false === wp_verify_nonce( $nonce, $nonce_action ) ) {
			return null;
		}
		$shown = isset( $_POST[ self::FIELD_SHOWN ] ) ? sanitize_key( wp_unslash( $_POST[ self::FIELD_SHOWN ] ) ) : '';
		if ( $form !== $shown ) {
			return null;
		}
		return ! empty( $_POST[ self::FIELD ] );
	}

	/**
	 * Classic checkout: the box above the "Place order" button, unless the shopper is logged in
	 * and already subscribed.
	 *
	 * @return void
	 */
	public function action_woocommerce_review_order_before_submit(): void {
		if ( self::enabled_for( 'checkout' ) && ! self::user_subscribed( get_current_user_id() ) ) {
			self::render_box( self::SOURCE_CLASSIC, false, 'form-row' );
		}
	}

	/**
	 * Classic checkout, right after WooCommerce checked its nonce: reads the choice while the
	 * shopper is still who the nonce was made for (a "create an account" checkout logs the new
	 * customer in before the order is created).
	 *
	 * @return void
	 */
	public function action_woocommerce_checkout_process(): void {
		self::$classic_choice = self::enabled_for( 'checkout' ) ? self::posted_choice( 'woocommerce-process-checkout-nonce', 'woocommerce-process_checkout', self::SOURCE_CLASSIC ) : null;
	}

	/**
	 * Classic checkout: the choice on the order before its first save (so the order ships with
	 * it), and on the customer when ticked. The choice read at `woocommerce_checkout_process`,
	 * or the posted form now when that did not run (an order created by other code).
	 *
	 * @param WC_Order $order The order being created.
	 * @return void
	 */
	public function action_woocommerce_checkout_create_order( $order ): void {
		$choice               = self::$classic_choice;
		self::$classic_choice = null;
		if ( ! self::enabled_for( 'checkout' ) ) {
			return;
		}
		$choice = $choice ?? self::posted_choice( 'woocommerce-process-checkout-nonce', 'woocommerce-process_checkout', self::SOURCE_CLASSIC );
		if ( null !== $choice ) {
			self::record_checkout( $order, $choice, self::SOURCE_CLASSIC );
		}
	}

	/**
	 * Block checkout: registers the checkbox field (location `order`) when the box is on, this
	 * WooCommerce has the API, and the shopper is not a logged-in subscriber. Runs on
	 * `woocommerce_init`; registers once per request.
	 *
	 * @return bool Whether the field is registered for this request.
	 */
	public function action_woocommerce_init(): bool {
		if ( self::$block_field_registered ) {
			return true;
		}
		if ( ! self::enabled_for( 'checkout' ) || ! self::block_checkout_supported() || self::user_subscribed( get_current_user_id() ) ) {
			return false;
		}
		woocommerce_register_additional_checkout_field(
			array(
				'id'       => self::BLOCK_FIELD,
				'label'    => self::label(),
				'location' => 'order',
				'type'     => 'checkbox',
			)
		);
		self::$block_field_registered = true;
		return true;
	}

	/**
	 * Forgets the registration of this request (tests that change settings or the shopper;
	 * the caller deregisters the field from WooCommerce).
	 *
	 * @return void
	 */
	public static function reset_request(): void {
		self::$block_field_registered = false;
	}

	/**
	 * Block checkout: once the Store API has processed the order, the field's saved value
	 * (WooCommerce stores a checkbox as '1' or '0') becomes the record. Nothing when the field
	 * was not offered in this request and the order holds no value for it.
	 *
	 * @param WC_Order $order The order.
	 * @return void
	 */
	public function action_woocommerce_store_api_checkout_order_processed( $order ): void {
		if ( ! $order instanceof WC_Order || ! self::enabled_for( 'checkout' ) ) {
			return;
		}
		$saved = $order->meta_exists( self::BLOCK_FIELD_META );
		if ( ! $saved && ! self::$block_field_registered ) {
			return;
		}
		$subscribed = $saved && '1' === (string) $order->get_meta( self::BLOCK_FIELD_META, true );
		self::record_checkout( $order, $subscribed, self::SOURCE_BLOCK );
		$order->save();
	}

	/**
	 * Registration form: the box.
	 *
	 * @return void
	 */
	public function action_woocommerce_register_form(): void {
		if ( self::enabled_for( 'registration' ) ) {
			self::render_box( self::SOURCE_REGISTRATION, false, 'form-row form-row-wide' );
		}
	}

	/**
	 * A customer created from the registration form (not from checkout or code): the record,
	 * ticked or not. WooCommerce has checked the registration nonce; checked again here, as
	 * `woocommerce_created_customer` also fires for accounts made elsewhere.
	 *
	 * @param int $customer_id New customer.
	 * @return void
	 */
	public function action_woocommerce_created_customer( $customer_id ): void {
		if ( ! self::enabled_for( 'registration' ) ) {
			return;
		}
		$choice = self::posted_choice( 'woocommerce-register-nonce', 'woocommerce-register', self::SOURCE_REGISTRATION );
		if ( null !== $choice ) {
			self::set_user( (int) $customer_id, self::record( $choice, self::SOURCE_REGISTRATION ) );
		}
	}

	/**
	 * My Account → Account details: the box, ticked when the customer's record says subscribed.
	 *
	 * @return void
	 */
	public function action_woocommerce_edit_account_form(): void {
		if ( self::enabled_for( 'my_account' ) ) {
			self::render_box( self::SOURCE_MY_ACCOUNT, self::user_subscribed( get_current_user_id() ), 'woocommerce-form-row woocommerce-form-row--wide form-row form-row-wide' );
		}
	}

	/**
	 * My Account saved: a change of the box becomes a record; unticking a subscription is an
	 * explicit withdrawal (`subscribed:false, source:my_account`). An unchanged box writes
	 * nothing, so the record keeps the time the person chose.
	 *
	 * @param int $user_id The customer.
	 * @return void
	 */
	public function action_woocommerce_save_account_details( $user_id ): void {
		$user_id = (int) $user_id;
		if ( ! self::enabled_for( 'my_account' ) || ! current_user_can( 'edit_user', $user_id ) ) {
			return;
		}
		$choice = self::posted_choice( 'save-account-details-nonce', 'save_account_details', self::SOURCE_MY_ACCOUNT );
		if ( null === $choice || $choice === self::user_subscribed( $user_id ) ) {
			return;
		}
		if ( ! $choice && null === self::of_user( $user_id ) ) {
			return; // Never subscribed: unticked is no change.
		}
		self::set_user( $user_id, self::record( $choice, self::SOURCE_MY_ACCOUNT ) );
	}
}
