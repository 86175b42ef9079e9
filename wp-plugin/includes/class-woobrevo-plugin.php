<?php
/**
 * Wires the plugin: requirement checks, then every hook in one list.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * The plugin's one entry point after the bootstrap file.
 */
final class WooBrevo_Plugin {

	/**
	 * The running instance (null while inert).
	 *
	 * @var WooBrevo_Plugin|null
	 */
	private static ?WooBrevo_Plugin $instance = null;

	/**
	 * Why the plugin stays inert, shown as an admin notice: messages, or requirement_problems()
	 * entries (worded when shown, once translations are loaded).
	 *
	 * @var array<int, string|array{0: string, 1: string, 2: ?string}>
	 */
	private static array $errors = array();

	/**
	 * Capture callbacks.
	 *
	 * @var WooBrevo_Capture
	 */
	private WooBrevo_Capture $capture;

	/**
	 * Cart capture and restore.
	 *
	 * @var WooBrevo_Carts
	 */
	private WooBrevo_Carts $carts;

	/**
	 * The opt-in box and consent records.
	 *
	 * @var WooBrevo_Consent
	 */
	private WooBrevo_Consent $consent;

	/**
	 * Settings screen.
	 *
	 * @var WooBrevo_Settings
	 */
	private WooBrevo_Settings $settings;

	/**
	 * Network admin screen.
	 *
	 * @var WooBrevo_Network
	 */
	private WooBrevo_Network $network;

	/**
	 * Personal-data eraser and exporter.
	 *
	 * @var WooBrevo_Privacy
	 */
	private WooBrevo_Privacy $privacy;

	/**
	 * Constructor.
	 */
	private function __construct() {
		$this->capture  = new WooBrevo_Capture();
		$this->carts    = new WooBrevo_Carts();
		$this->consent  = new WooBrevo_Consent();
		$this->settings = new WooBrevo_Settings();
		$this->network  = new WooBrevo_Network();
		$this->privacy  = new WooBrevo_Privacy();
	}

	/**
	 * Runs on `plugins_loaded`: checks requirements against the running versions, then starts.
	 *
	 * @return void
	 */
	public static function boot(): void {
		global $wp_version;
		// Problems, not messages: translations are not loaded before `init`.
		self::start( self::requirement_problems( (string) $wp_version, defined( 'WC_VERSION' ) ? (string) WC_VERSION : null, PHP_VERSION ) );
	}

	/**
	 * Starts with the given requirement errors: inert with an admin notice if there are any.
	 *
	 * @param array<int, string|array{0: string, 1: string, 2: ?string}> $errors Unmet requirements: messages or requirement_problems().
	 * @return WooBrevo_Plugin|null The running instance, or null when inert.
	 */
	public static function start( array $errors ): ?WooBrevo_Plugin {
		// Translations load on `init` (WordPress 6.7 warns about a text domain loaded sooner), inert or not.
		add_action( 'init', array( __CLASS__, 'load_textdomain' ), 1, 0 );
		if ( $errors ) {
			self::$errors = $errors;
			add_action( 'admin_notices', array( __CLASS__, 'action_admin_notices_requirements' ) );
			add_action( 'network_admin_notices', array( __CLASS__, 'action_admin_notices_requirements' ) );
			return null;
		}
		if ( null === self::$instance ) {
			self::$instance = new self();
			self::$instance->set_up();
		}
		return self::$instance;
	}

	/**
	 * Loads the `woobrevo` text domain: a language pack in wp-content/languages/plugins/, or the
	 * plugin's own languages/ folder.
	 *
	 * @return void
	 */
	public static function load_textdomain(): void {
		load_plugin_textdomain( 'woobrevo', false, dirname( plugin_basename( WOOBREVO_FILE ) ) . '/languages' );
	}

	/**
	 * The running instance, if any.
	 *
	 * @return WooBrevo_Plugin|null
	 */
	public static function instance(): ?WooBrevo_Plugin {
		return self::$instance;
	}

	/**
	 * Unmet requirements (WordPress ≥ 6.1, WooCommerce ≥ 7.0, PHP ≥ 8.0), as data: which
	 * software, the version needed, the version running (null: WooCommerce is not active).
	 *
	 * @param string      $wp_version  Running WordPress version.
	 * @param string|null $wc_version  Running WooCommerce version, null when it is not active.
	 * @param string      $php_version Running PHP version.
	 * @return array<int, array{0: string, 1: string, 2: ?string}>
	 */
	public static function requirement_problems( string $wp_version, ?string $wc_version, string $php_version ): array {
		$problems = array();
		if ( version_compare( $php_version, WOOBREVO_MIN_PHP, '<' ) ) {
			$problems[] = array( 'PHP', WOOBREVO_MIN_PHP, $php_version );
		}
		if ( version_compare( $wp_version, WOOBREVO_MIN_WP, '<' ) ) {
			$problems[] = array( 'WordPress', WOOBREVO_MIN_WP, $wp_version );
		}
		if ( null === $wc_version || version_compare( $wc_version, WOOBREVO_MIN_WC, '<' ) ) {
			$problems[] = array( 'WooCommerce', WOOBREVO_MIN_WC, $wc_version );
		}
		return $problems;
	}

	/**
	 * Unmet requirements, as messages.
	 *
	 * @param string      $wp_version  Running WordPress version.
	 * @param string|null $wc_version  Running WooCommerce version, null when it is not active.
	 * @param string      $php_version Running PHP version.
	 * @return string[]
	 */
	public static function requirement_errors( string $wp_version, ?string $wc_version, string $php_version ): array {
		return array_map( array( __CLASS__, 'requirement_message' ), self::requirement_problems( $wp_version, $wc_version, $php_version ) );
	}

	/**
	 * One unmet requirement, as a message.
	 *
	 * @param string|array{0: string, 1: string, 2: ?string} $problem A requirement_problems() entry (or a message, kept).
	 * @return string
	 */
	private static function requirement_message( $problem ): string {
		if ( ! is_array( $problem ) ) {
			return (string) $problem;
		}
		list( $software, $needed, $running ) = $problem;
		if ( null === $running ) {
			return __( 'WooBrevo needs WooCommerce, which is not active.', 'woobrevo' );
		}
		/* translators: 1: PHP, WordPress or WooCommerce, 2: the version WooBrevo needs, 3: the version this site runs. */
		return sprintf( __( 'WooBrevo needs %1$s %2$s or newer (this site runs %3$s).', 'woobrevo' ), $software, $needed, $running );
	}

	/**
	 * Shows why the plugin is inert.
	 *
	 * @return void
	 */
	public static function action_admin_notices_requirements(): void {
		if ( ! current_user_can( 'activate_plugins' ) ) {
			return;
		}
		foreach ( self::$errors as $error ) {
			echo '<div class="notice notice-error"><p>' . esc_html( self::requirement_message( $error ) . ' ' . __( 'It stays inactive until then.', 'woobrevo' ) ) . '</p></div>';
		}
	}

	/**
	 * Every hook the plugin uses: [hook, callback, priority, accepted args].
	 *
	 * @return array<int, array{0:string,1:callable,2:int,3:int}>
	 */
	public function hooks(): array {
		$c = $this->capture;
		$s = $this->settings;
		$n = $this->network;
		$k = $this->carts;
		$o = $this->consent;
		return array(
			// Schema and multisite life cycle.
			array( 'init', array( 'WooBrevo_Schema', 'maybe_upgrade' ), 5, 0 ),
			array( 'wp_initialize_site', array( 'WooBrevo_Schema', 'action_wp_initialize_site' ), 100, 1 ),
			array( 'wpmu_drop_tables', array( 'WooBrevo_Schema', 'filter_wpmu_drop_tables' ), 10, 2 ),
			// Shipping: after the response, and every minute from WP-Cron.
			array( 'cron_schedules', array( $this, 'filter_cron_schedules' ), 10, 1 ),
			array( 'init', array( $this, 'action_init' ), 20, 0 ),
			array( 'woobrevo_ship', array( $this, 'action_woobrevo_ship' ), 10, 0 ),
			array( 'shutdown', array( $this, 'action_shutdown' ), 100, 0 ),
			// Customers.
			array( 'user_register', array( $c, 'action_user_register' ), 10, 1 ),
			array( 'woocommerce_created_customer', array( $c, 'action_woocommerce_created_customer' ), 10, 1 ),
			array( 'woocommerce_new_customer', array( $c, 'action_woocommerce_new_customer' ), 10, 1 ),
			array( 'profile_update', array( $c, 'action_profile_update' ), 10, 1 ),
			array( 'edit_user_profile_update', array( $c, 'action_edit_user_profile_update' ), 10, 1 ),
			array( 'personal_options_update', array( $c, 'action_personal_options_update' ), 10, 1 ),
			array( 'woocommerce_update_customer', array( $c, 'action_woocommerce_update_customer' ), 10, 1 ),
			array( 'delete_user', array( $c, 'action_delete_user' ), 10, 1 ),
			array( 'wpmu_delete_user', array( $c, 'action_wpmu_delete_user' ), 10, 1 ),
			array( 'woocommerce_delete_customer', array( $c, 'action_woocommerce_delete_customer' ), 10, 1 ),
			array( 'added_user_meta', array( $c, 'action_added_user_meta' ), 10, 3 ),
			array( 'updated_user_meta', array( $c, 'action_updated_user_meta' ), 10, 3 ),
			array( 'deleted_user_meta', array( $c, 'action_deleted_user_meta' ), 10, 3 ),
			// Orders.
			array( 'woocommerce_new_order', array( $c, 'action_woocommerce_new_order' ), 10, 2 ),
			array( 'woocommerce_update_order', array( $c, 'action_woocommerce_update_order' ), 10, 2 ),
			array( 'woocommerce_order_status_changed', array( $c, 'action_woocommerce_order_status_changed' ), 10, 3 ),
			array( 'woocommerce_order_refunded', array( $c, 'action_woocommerce_order_refunded' ), 10, 2 ),
			array( 'woocommerce_delete_order_refund', array( $c, 'action_woocommerce_delete_order_refund' ), 10, 2 ),
			array( 'woocommerce_trash_order', array( $c, 'action_woocommerce_trash_order' ), 10, 1 ),
			array( 'woocommerce_untrash_order', array( $c, 'action_woocommerce_untrash_order' ), 10, 2 ),
			array( 'woocommerce_delete_order', array( $c, 'action_woocommerce_delete_order' ), 10, 1 ),
			// Products and variations.
			array( 'woocommerce_new_product', array( $c, 'action_woocommerce_new_product' ), 10, 2 ),
			array( 'woocommerce_update_product', array( $c, 'action_woocommerce_update_product' ), 10, 2 ),
			array( 'woocommerce_new_product_variation', array( $c, 'action_woocommerce_new_product_variation' ), 10, 2 ),
			array( 'woocommerce_update_product_variation', array( $c, 'action_woocommerce_update_product_variation' ), 10, 2 ),
			array( 'woocommerce_product_set_stock', array( $c, 'action_woocommerce_product_set_stock' ), 10, 1 ),
			array( 'woocommerce_variation_set_stock', array( $c, 'action_woocommerce_variation_set_stock' ), 10, 1 ),
			array( 'woocommerce_process_product_meta', array( $c, 'action_woocommerce_process_product_meta' ), 10, 1 ),
			array( 'woocommerce_trash_product', array( $c, 'action_woocommerce_trash_product' ), 10, 1 ),
			array( 'woocommerce_delete_product', array( $c, 'action_woocommerce_delete_product' ), 10, 1 ),
			array( 'woocommerce_trash_product_variation', array( $c, 'action_woocommerce_trash_product_variation' ), 10, 1 ),
			array( 'woocommerce_before_delete_product_variation', array( $c, 'action_woocommerce_before_delete_product_variation' ), 10, 1 ),
			array( 'woocommerce_delete_product_variation', array( $c, 'action_woocommerce_delete_product_variation' ), 10, 1 ),
			// Coupons.
			array( 'woocommerce_new_coupon', array( $c, 'action_woocommerce_new_coupon' ), 10, 1 ),
			array( 'woocommerce_update_coupon', array( $c, 'action_woocommerce_update_coupon' ), 10, 1 ),
			array( 'woocommerce_process_shop_coupon_meta', array( $c, 'action_woocommerce_process_shop_coupon_meta' ), 10, 1 ),
			array( 'woocommerce_trash_coupon', array( $c, 'action_woocommerce_trash_coupon' ), 10, 1 ),
			array( 'woocommerce_delete_coupon', array( $c, 'action_woocommerce_delete_coupon' ), 10, 1 ),
			// Carts: snapshots, the guest's e-mail (classic and block checkout), the restore link.
			array( 'woocommerce_cart_updated', array( $k, 'action_woocommerce_cart_updated' ), 10, 0 ),
			array( 'woocommerce_cart_emptied', array( $k, 'action_woocommerce_cart_emptied' ), 10, 0 ),
			array( 'woocommerce_checkout_order_processed', array( $k, 'action_woocommerce_checkout_order_processed' ), 10, 1 ),
			array( 'woocommerce_store_api_checkout_order_processed', array( $k, 'action_woocommerce_store_api_checkout_order_processed' ), 10, 1 ),
			array( 'woocommerce_store_api_cart_update_customer_from_request', array( $k, 'action_woocommerce_store_api_cart_update_customer_from_request' ), 10, 2 ),
			array( 'rest_api_init', array( $k, 'action_rest_api_init' ), 10, 0 ),
			array( 'wp_enqueue_scripts', array( $k, 'action_wp_enqueue_scripts' ), 10, 0 ),
			array( 'wp_loaded', array( $k, 'action_wp_loaded' ), 30, 0 ),
			// Opt-in: the box on the classic and block checkouts, registration and My Account; the
			// record is written before the order's first save (classic) or right after the Store
			// API processed it (block), so the order ships with it.
			array( 'woocommerce_review_order_before_submit', array( $o, 'action_woocommerce_review_order_before_submit' ), 10, 0 ),
			array( 'woocommerce_checkout_process', array( $o, 'action_woocommerce_checkout_process' ), 10, 0 ),
			array( 'woocommerce_checkout_create_order', array( $o, 'action_woocommerce_checkout_create_order' ), 10, 1 ),
			array( 'woocommerce_init', array( $o, 'action_woocommerce_init' ), 10, 0 ),
			array( 'woocommerce_store_api_checkout_order_processed', array( $o, 'action_woocommerce_store_api_checkout_order_processed' ), 5, 1 ),
			array( 'woocommerce_register_form', array( $o, 'action_woocommerce_register_form' ), 10, 0 ),
			array( 'woocommerce_created_customer', array( $o, 'action_woocommerce_created_customer' ), 5, 1 ),
			array( 'woocommerce_edit_account_form', array( $o, 'action_woocommerce_edit_account_form' ), 10, 0 ),
			array( 'woocommerce_save_account_details', array( $o, 'action_woocommerce_save_account_details' ), 10, 1 ),
			// wp-admin post paths (trash, restore, delete) and posts-storage meta.
			array( 'trashed_post', array( $c, 'action_trashed_post' ), 10, 1 ),
			array( 'untrashed_post', array( $c, 'action_untrashed_post' ), 10, 2 ),
			array( 'before_delete_post', array( $c, 'action_before_delete_post' ), 10, 1 ),
			array( 'added_post_meta', array( $c, 'action_added_post_meta' ), 10, 3 ),
			array( 'updated_post_meta', array( $c, 'action_updated_post_meta' ), 10, 3 ),
			array( 'deleted_post_meta', array( $c, 'action_deleted_post_meta' ), 10, 3 ),
			// Admin.
			array( 'admin_menu', array( $s, 'action_admin_menu' ), 10, 0 ),
			array( 'admin_post_woobrevo_save', array( $s, 'action_admin_post_woobrevo_save' ), 10, 0 ),
			array( 'admin_post_woobrevo_test_connection', array( $s, 'action_admin_post_woobrevo_test_connection' ), 10, 0 ),
			array( 'admin_notices', array( $s, 'action_admin_notices' ), 10, 0 ),
			// Settings, whatever writes them (the screen, WP-CLI, `wp option update`): a new agent
			// URL or token ends the backoff and ships at shutdown.
			array( 'sanitize_option_woobrevo_agent_url', array( $s, 'filter_sanitize_option_woobrevo_agent_url' ), 10, 1 ),
			array( 'added_option', array( $s, 'action_added_option' ), 10, 1 ),
			array( 'updated_option', array( $s, 'action_updated_option' ), 10, 1 ),
			array( 'network_admin_menu', array( $n, 'action_network_admin_menu' ), 10, 0 ),
			// Personal data (Tools → Erase / Export Personal Data); the eraser runs after the others.
			array( 'wp_privacy_personal_data_erasers', array( $this->privacy, 'filter_wp_privacy_personal_data_erasers' ), 1000, 1 ),
			array( 'wp_privacy_personal_data_exporters', array( $this->privacy, 'filter_wp_privacy_personal_data_exporters' ), 10, 1 ),
		);
	}

	/**
	 * Registers hooks(), and the WP-CLI command when running under WP-CLI.
	 *
	 * @return void
	 */
	private function set_up(): void {
		foreach ( $this->hooks() as $hook ) {
			add_filter( $hook[0], $hook[1], $hook[2], $hook[3] );
		}
		if ( defined( 'WP_CLI' ) && WP_CLI && class_exists( 'WP_CLI' ) ) {
			WP_CLI::add_command( 'woobrevo', 'WooBrevo_Cli' );
		}
	}

	/**
	 * Adds the one-minute schedule WP-Cron ticks on.
	 *
	 * @param array $schedules Schedules.
	 * @return array
	 */
	public function filter_cron_schedules( $schedules ): array {
		$schedules                   = (array) $schedules;
		$schedules['woobrevo_minute'] = array(
			'interval' => MINUTE_IN_SECONDS,
			'display'  => __( 'Every minute (WooBrevo)', 'woobrevo' ),
		);
		return $schedules;
	}

	/**
	 * Keeps the one-minute event scheduled (cheap: the cron option is autoloaded).
	 *
	 * @return void
	 */
	public function action_init(): void {
		if ( WooBrevo_Schema::is_installed() && ! wp_next_scheduled( 'woobrevo_ship' ) ) {
			wp_schedule_event( time() + MINUTE_IN_SECONDS, 'woobrevo_minute', 'woobrevo_ship' );
		}
	}

	/**
	 * A shipper over the current site's outbox.
	 *
	 * @return WooBrevo_Shipper
	 */
	public static function shipper(): WooBrevo_Shipper {
		return new WooBrevo_Shipper( new WooBrevo_Outbox(), new WooBrevo_Payloads() );
	}

	/**
	 * Whether the site has an agent to ship to.
	 *
	 * @return bool
	 */
	public static function is_configured(): bool {
		return '' !== (string) WooBrevo_Settings::get( 'agent_url' ) && '' !== (string) WooBrevo_Settings::get( 'token' );
	}

	/**
	 * The WP-Cron tick.
	 *
	 * @return void
	 */
	public function action_woobrevo_ship(): void {
		if ( self::is_configured() && WooBrevo_Schema::is_installed() ) {
			update_option( WooBrevo_Options::LAST_TICK, time() );
			self::shipper()->tick();
		}
	}

	/**
	 * After the response: ship when this request wrote rows, a heartbeat is due (one a minute),
	 * or the site's agent URL or token changed (then at once, whatever the backoff). A network
	 * admin may change another site's settings (Network Admin → Sites → Edit): that site ships
	 * too, and only it.
	 *
	 * @return void
	 */
	public function action_shutdown(): void {
		$changed = WooBrevo_Settings::take_changed_sites();
		/**
		 * Whether the shipper may run at the end of this request.
		 *
		 * @since 0.1.0
		 * @param bool $ship True by default.
		 */
		if ( ! apply_filters( 'woobrevo_ship_on_shutdown', true ) || wp_doing_cron() ) {
			return;
		}
		$here  = get_current_blog_id();
		$sites = array();
		if ( in_array( $here, $changed, true ) || 0 < WooBrevo_Outbox::added_in_request()
			|| time() - (int) get_option( WooBrevo_Options::LAST_TICK, 0 ) >= MINUTE_IN_SECONDS ) {
			$sites[] = $here;
		}
		$sites = array_values( array_filter( array_unique( array_merge( $sites, $changed ) ), array( __CLASS__, 'site_ships' ) ) );
		if ( array() === $sites ) {
			return;
		}
		// The shopper has their page before any socket opens.
		if ( function_exists( 'fastcgi_finish_request' ) ) {
			fastcgi_finish_request();
		} elseif ( function_exists( 'litespeed_finish_request' ) ) {
			litespeed_finish_request();
		}
		foreach ( $sites as $blog_id ) {
			$switched = $blog_id !== $here;
			if ( $switched ) {
				switch_to_blog( $blog_id );
			}
			update_option( WooBrevo_Options::LAST_TICK, time() );
			// A settings change is an admin's request (or WP-CLI, which may ship anyway): where the
			// server cannot send the response first (mod_php), the admin's redirect waits for the tick.
			$by_admin = in_array( $blog_id, $changed, true ) && current_user_can( WooBrevo_Settings::CAPABILITY );
			self::shipper()->tick( 10, $by_admin );
			if ( $switched ) {
				restore_current_blog();
			}
		}
	}

	/**
	 * Whether a site has an agent to ship to and its outbox table.
	 *
	 * @param int $blog_id Site id.
	 * @return bool
	 */
	private static function site_ships( int $blog_id ): bool {
		$switched = get_current_blog_id() !== $blog_id;
		if ( $switched ) {
			switch_to_blog( $blog_id );
		}
		$ships = self::is_configured() && WooBrevo_Schema::is_installed();
		if ( $switched ) {
			restore_current_blog();
		}
		return $ships;
	}

	/**
	 * Deactivation: stop the cron event (data stays until uninstall).
	 *
	 * @return void
	 */
	public static function deactivate(): void {
		wp_clear_scheduled_hook( 'woobrevo_ship' );
	}
}
