<?php
/**
 * WordPress's personal-data tools (Tools → Erase / Export Personal Data) for what WooBrevo holds.
 *
 * The eraser removes what the plugin keeps about an e-mail (consent records, cart rows, outbox
 * rows that would still ship it) and queues one `privacy.erase` event, after everything else of
 * this site's outbox: the agent then deletes the contact in Brevo and forgets the e-mail. The
 * exporter lists what the plugin keeps and asks the agent, over a websocket connection of its
 * own, what it keeps (the `export` message).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * The personal-data eraser and exporter. Registered by WooBrevo_Plugin.
 */
final class WooBrevo_Privacy {

	/** The eraser's and exporter's key in WordPress's lists. */
	public const ID = 'woobrevo';

	/** The consent record's meta key, on the customer and on the order. */
	public const CONSENT_META = '_woobrevo_consent';

	/** Seconds the exporter waits for the agent (connect, welcome and answer together). */
	public const EXPORT_TIMEOUT = 5.0;

	/**
	 * Outbox of the current site.
	 *
	 * @var WooBrevo_Outbox
	 */
	private WooBrevo_Outbox $outbox;

	/**
	 * Makes the websocket client (injectable for tests).
	 *
	 * @var callable(): WooBrevo_Ws_Client
	 */
	private $client_factory;

	/**
	 * Constructor.
	 *
	 * @param WooBrevo_Outbox|null $outbox         Outbox; the current site's by default.
	 * @param callable|null        $client_factory Returns a new WooBrevo_Ws_Client.
	 */
	public function __construct( ?WooBrevo_Outbox $outbox = null, ?callable $client_factory = null ) {
		$this->outbox         = $outbox ? $outbox : new WooBrevo_Outbox();
		$this->client_factory = $client_factory ?? static fn(): WooBrevo_Ws_Client => new WooBrevo_Ws_Client();
	}

	/**
	 * `wp_privacy_personal_data_erasers`: adds WooBrevo's eraser. Registered late, so it runs after
	 * the other erasers (WooCommerce's among them) and what they change cannot ship after it.
	 *
	 * @param array $erasers Erasers.
	 * @return array
	 */
	public function filter_wp_privacy_personal_data_erasers( $erasers ): array {
		$erasers              = (array) $erasers;
		$erasers[ self::ID ] = array(
			'eraser_friendly_name' => __( 'WooBrevo (Brevo sync)', 'woobrevo' ),
			'callback'             => array( $this, 'erase' ),
		);
		return $erasers;
	}

	/**
	 * `wp_privacy_personal_data_exporters`: adds WooBrevo's exporter.
	 *
	 * @param array $exporters Exporters.
	 * @return array
	 */
	public function filter_wp_privacy_personal_data_exporters( $exporters ): array {
		$exporters              = (array) $exporters;
		$exporters[ self::ID ] = array(
			'exporter_friendly_name' => __( 'WooBrevo (Brevo sync)', 'woobrevo' ),
			'callback'               => array( $this, 'export' ),
		);
		return $exporters;
	}

	// ----------------------------------------------------------------------------------------
	// Erasure.

	/**
	 * The eraser: everything on its first page. Removes the consent records on the customer and
	 * their orders, the cart rows, and the outbox rows of the person's customer, orders and carts
	 * (each would ship the e-mail again after the erasure), then queues one `privacy.erase` for
	 * the agent; a later page, or the same request run again before it shipped, queues none.
	 *
	 * @param string $email The person's e-mail.
	 * @param int    $page  Page WordPress asks for (1-based).
	 * @return array{items_removed: bool, items_retained: bool, messages: string[], done: bool}
	 */
	public function erase( $email, $page = 1 ): array {
		$email  = strtolower( trim( (string) $email ) );
		$result = array(
			'items_removed'  => false,
			'items_retained' => false,
			'messages'       => array(),
			'done'           => true,
		);
		if ( (int) $page > 1 || ! is_email( $email ) ) {
			return $result;
		}
		if ( ! WooBrevo_Schema::is_installed() ) {
			$result['items_retained'] = true;
			$result['messages'][]     = __( 'WooBrevo\'s tables are not installed on this site, so the erasure could not be sent to Brevo. Reactivate WooBrevo and erase again.', 'woobrevo' );
			return $result;
		}
		$user     = get_user_by( 'email', $email );
		$user_id  = $user ? (int) $user->ID : 0;
		$orders   = $this->order_ids( $email, $user_id );
		$removed  = $this->erase_consent( $user_id, $orders );
		$carts    = $this->cart_ids( $email, $user_id );
		$removed += $this->delete_carts( $carts );
		$removed += $this->delete_pending( $user_id, $orders, $carts );
		$id       = $this->queued_erasure( $email );
		if ( null === $id ) {
			$id = self::next_erasure_id();
			$this->outbox->add(
				'privacy',
				$id,
				'erase',
				array(
					'email'             => $email,
					'date_modified_gmt' => gmdate( 'Y-m-d\TH:i:s' ),
				)
			);
			++$removed;
		}
		$result['items_removed'] = $removed > 0;
		$result['messages'][]    = sprintf(
			/* translators: %d: the erasure's number. */
			__( 'WooBrevo erasure %d is queued: at the next sync WooBrevo\'s agent erases the contact in Brevo (deleted, or blocklisted if the agent is set so) and forgets this e-mail.', 'woobrevo' ),
			$id
		);
		return $result;
	}

	/**
	 * The payload of a `privacy.erase` row (the shipper builds it from the row's extra).
	 *
	 * @param int   $id    The erasure id (the row's resource_id).
	 * @param array $extra The row's extra: email, date_modified_gmt.
	 * @return array{id: int, email: string, date_modified_gmt: string}
	 * @throws RuntimeException When the row has no e-mail (it then stays in the outbox).
	 */
	public static function erase_payload( int $id, array $extra ): array {
		$email = (string) ( $extra['email'] ?? '' );
		if ( '' === $email ) {
			throw new RuntimeException( sprintf( 'erasure %d has no e-mail', $id ) );
		}
		return array(
			'id'                => $id,
			'email'             => $email,
			'date_modified_gmt' => (string) ( $extra['date_modified_gmt'] ?? gmdate( 'Y-m-d\TH:i:s' ) ),
		);
	}

	/**
	 * The next erasure id of this site: the `woobrevo_erasure_seq` option plus one, counted up in
	 * one statement so two erasures at once never get the same id.
	 *
	 * @return int
	 */
	public static function next_erasure_id(): int {
		global $wpdb;
		add_option( WooBrevo_Options::ERASURE_SEQ, '0', '', false );
		$wpdb->query(
			$wpdb->prepare( "UPDATE {$wpdb->options} SET option_value = LAST_INSERT_ID(CAST(option_value AS UNSIGNED) + 1) WHERE option_name = %s", WooBrevo_Options::ERASURE_SEQ )
		);
		$id = (int) $wpdb->get_var( 'SELECT LAST_INSERT_ID()' );
		wp_cache_delete( WooBrevo_Options::ERASURE_SEQ, 'options' );
		return max( 1, $id );
	}

	/**
	 * The id of a `privacy.erase` for this e-mail still in the outbox, if any.
	 *
	 * @param string $email Lower-case e-mail.
	 * @return int|null
	 */
	private function queued_erasure( string $email ): ?int {
		global $wpdb;
		$rows = $wpdb->get_results(
			$wpdb->prepare( "SELECT resource_id, extra FROM {$this->outbox->table()} WHERE resource = %s ORDER BY id", 'privacy' ), // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- the table name is ours.
			ARRAY_A
		);
		foreach ( (array) $rows as $row ) {
			$extra = json_decode( (string) $row['extra'], true );
			if ( is_array( $extra ) && strtolower( (string) ( $extra['email'] ?? '' ) ) === $email ) {
				return (int) $row['resource_id'];
			}
		}
		return null;
	}

	/**
	 * The orders of this e-mail: billed to it, or placed by its customer.
	 *
	 * @param string $email   E-mail.
	 * @param int    $user_id The customer's user id, or 0.
	 * @return int[]
	 */
	private function order_ids( string $email, int $user_id ): array {
		if ( ! function_exists( 'wc_get_orders' ) ) {
			return array();
		}
		$ids = array();
		foreach ( array_filter( array( $email, $user_id ) ) as $customer ) {
			// As WooCommerce's own eraser asks (its statuses, shop orders): billed to the e-mail, or the customer's.
			$found = wc_get_orders(
				array(
					'customer' => $customer,
					'limit'    => -1,
					'return'   => 'ids',
				)
			);
			$ids = array_merge( $ids, array_map( 'intval', (array) $found ) );
		}
		return array_values( array_unique( $ids ) );
	}

	/**
	 * Removes the consent record from the customer and their orders.
	 *
	 * @param int   $user_id The customer's user id, or 0.
	 * @param int[] $orders  Order ids.
	 * @return int Records removed.
	 */
	private function erase_consent( int $user_id, array $orders ): int {
		$removed = 0;
		if ( $user_id > 0 && metadata_exists( 'user', $user_id, self::CONSENT_META ) ) {
			delete_user_meta( $user_id, self::CONSENT_META );
			++$removed;
		}
		foreach ( $orders as $order_id ) {
			$order = wc_get_order( $order_id );
			if ( $order && $order->meta_exists( self::CONSENT_META ) ) {
				$order->delete_meta_data( self::CONSENT_META );
				$order->save(); // Its order.updated row is deleted with the other pending rows.
				++$removed;
			}
		}
		return $removed;
	}

	/**
	 * The ids of the carts of this e-mail or customer.
	 *
	 * @param string $email   E-mail.
	 * @param int    $user_id The customer's user id, or 0.
	 * @return int[]
	 */
	private function cart_ids( string $email, int $user_id ): array {
		global $wpdb;
		$table = WooBrevo_Schema::carts_table();
		return array_map(
			'intval',
			(array) $wpdb->get_col(
				$wpdb->prepare( "SELECT id FROM {$table} WHERE LOWER(email) = %s OR ( customer_id > 0 AND customer_id = %d )", $email, $user_id ) // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- the table name is ours.
			)
		);
	}

	/**
	 * Deletes cart rows.
	 *
	 * @param int[] $ids Cart ids.
	 * @return int Rows deleted.
	 */
	private function delete_carts( array $ids ): int {
		global $wpdb;
		if ( array() === $ids ) {
			return 0;
		}
		$table = WooBrevo_Schema::carts_table();
		return (int) $wpdb->query(
			$wpdb->prepare( "DELETE FROM {$table} WHERE id IN (" . implode( ',', array_fill( 0, count( $ids ), '%d' ) ) . ')', $ids ) // phpcs:ignore WordPress.DB.PreparedSQL -- the table name is ours, placeholders built here.
		);
	}

	/**
	 * Deletes the outbox rows whose payload would carry the e-mail: the customer's, the orders'
	 * (refunds ship as their order) and the carts'. A row a shipper holds right now is deleted
	 * too; its ack then deletes nothing.
	 *
	 * @param int   $user_id The customer's user id, or 0.
	 * @param int[] $orders  Order ids.
	 * @param int[] $carts   Cart ids.
	 * @return int Rows deleted.
	 */
	private function delete_pending( int $user_id, array $orders, array $carts ): int {
		global $wpdb;
		$deleted = 0;
		foreach ( array(
			'customer' => $user_id > 0 ? array( $user_id ) : array(),
			'order'    => $orders,
			'cart'     => $carts,
		) as $resource => $ids ) {
			foreach ( array_chunk( $ids, 500 ) as $chunk ) {
				$deleted += (int) $wpdb->query(
					$wpdb->prepare(
						"DELETE FROM {$this->outbox->table()} WHERE resource = %s AND resource_id IN (" . implode( ',', array_fill( 0, count( $chunk ), '%d' ) ) . ')', // phpcs:ignore WordPress.DB.PreparedSQL -- the table name is ours, placeholders built here.
						array_merge( array( $resource ), $chunk )
					)
				);
			}
		}
		if ( $deleted > 0 ) {
			delete_transient( WooBrevo_Options::DEPTH_TRANSIENT );
		}
		return $deleted;
	}

	// ----------------------------------------------------------------------------------------
	// Export.

	/**
	 * The exporter: what the plugin keeps about the e-mail (consent records, carts, outbox rows
	 * waiting) and what the agent keeps, asked over the websocket. When the agent cannot be asked,
	 * the export says so in a group of its own and still lists the plugin's part.
	 *
	 * @param string $email The person's e-mail.
	 * @param int    $page  Page WordPress asks for (1-based).
	 * @return array{data: array<int, array<string, mixed>>, done: bool}
	 */
	public function export( $email, $page = 1 ): array {
		$email = strtolower( trim( (string) $email ) );
		if ( (int) $page > 1 || ! is_email( $email ) ) {
			return array(
				'data' => array(),
				'done' => true,
			);
		}
		$user    = get_user_by( 'email', $email );
		$user_id = $user ? (int) $user->ID : 0;
		$orders  = $this->order_ids( $email, $user_id );
		$carts   = WooBrevo_Schema::is_installed() ? $this->cart_ids( $email, $user_id ) : array();
		$data    = array_merge(
			$this->export_consent( $user_id, $orders ),
			$this->export_carts( $carts ),
			WooBrevo_Schema::is_installed() ? $this->export_outbox( $email, $user_id, $orders, $carts ) : array(),
			$this->export_agent( $email )
		);
		return array(
			'data' => $data,
			'done' => true,
		);
	}

	/**
	 * The consent records, on the customer and on their orders.
	 *
	 * @param int   $user_id The customer's user id, or 0.
	 * @param int[] $orders  Order ids.
	 * @return array<int, array<string, mixed>>
	 */
	private function export_consent( int $user_id, array $orders ): array {
		$records = array();
		if ( $user_id > 0 && metadata_exists( 'user', $user_id, self::CONSENT_META ) ) {
			/* translators: %d: user id. */
			$records[ 'woobrevo-consent-user-' . $user_id ] = array( sprintf( __( 'Customer account %d', 'woobrevo' ), $user_id ), get_user_meta( $user_id, self::CONSENT_META, true ) );
		}
		foreach ( $orders as $order_id ) {
			$order = wc_get_order( $order_id );
			if ( $order && $order->meta_exists( self::CONSENT_META ) ) {
				/* translators: %d: order number. */
				$records[ 'woobrevo-consent-order-' . $order_id ] = array( sprintf( __( 'Order %d', 'woobrevo' ), $order_id ), $order->get_meta( self::CONSENT_META, true ) );
			}
		}
		$items = array();
		foreach ( $records as $item_id => $record ) {
			list( $where, $value ) = $record;
			$value                 = is_string( $value ) ? json_decode( $value, true ) : $value;
			$value                 = is_array( $value ) ? $value : array();
			$items[]               = self::item(
				'woobrevo-consent',
				__( 'Marketing consent (WooBrevo)', 'woobrevo' ),
				$item_id,
				array(
					__( 'Recorded on', 'woobrevo' ) => $where,
					__( 'Subscribed', 'woobrevo' )  => ! empty( $value['subscribed'] ) ? __( 'yes', 'woobrevo' ) : __( 'no', 'woobrevo' ),
					__( 'Time', 'woobrevo' )        => (string) ( $value['time'] ?? '' ),
					__( 'Where', 'woobrevo' )       => (string) ( $value['source'] ?? '' ),
					__( 'Text shown', 'woobrevo' )  => (string) ( $value['text'] ?? '' ),
				)
			);
		}
		return $items;
	}

	/**
	 * The cart rows.
	 *
	 * @param int[] $ids Cart ids.
	 * @return array<int, array<string, mixed>>
	 */
	private function export_carts( array $ids ): array {
		$items = array();
		foreach ( $ids as $id ) {
			$snapshot = WooBrevo_Carts::stored_snapshot( $id );
			$lines    = array();
			foreach ( (array) ( $snapshot['items'] ?? array() ) as $line ) {
				$lines[] = sprintf( '%s × %d', (string) ( $line['name'] ?? '' ), (int) ( $line['quantity'] ?? 0 ) );
			}
			$items[] = self::item(
				'woobrevo-carts',
				__( 'Shopping carts (WooBrevo)', 'woobrevo' ),
				'woobrevo-cart-' . $id,
				array(
					__( 'Cart', 'woobrevo' )       => (string) $id,
					__( 'E-mail', 'woobrevo' )     => (string) ( $snapshot['email'] ?? '' ),
					__( 'Items', 'woobrevo' )      => implode( ', ', $lines ),
					__( 'Total', 'woobrevo' )      => trim( (string) ( $snapshot['totals']['total'] ?? '' ) . ' ' . (string) ( $snapshot['currency'] ?? '' ) ),
					__( 'Updated', 'woobrevo' )    => (string) ( $snapshot['date_modified_gmt'] ?? '' ),
				)
			);
		}
		return $items;
	}

	/**
	 * The outbox rows waiting that concern the person.
	 *
	 * @param string $email   E-mail.
	 * @param int    $user_id The customer's user id, or 0.
	 * @param int[]  $orders  Order ids.
	 * @param int[]  $carts   Cart ids.
	 * @return array<int, array<string, mixed>>
	 */
	private function export_outbox( string $email, int $user_id, array $orders, array $carts ): array {
		global $wpdb;
		$mine  = array(
			'customer' => array_flip( $user_id > 0 ? array( $user_id ) : array() ),
			'order'    => array_flip( $orders ),
			'cart'     => array_flip( $carts ),
		);
		$rows  = $wpdb->get_results( "SELECT id, resource, resource_id, topic, extra, occurred_at FROM {$this->outbox->table()} ORDER BY id", ARRAY_A ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- the table name is ours, no input.
		$items = array();
		foreach ( (array) $rows as $row ) {
			$resource = (string) $row['resource'];
			if ( 'privacy' === $resource ) {
				$extra = json_decode( (string) $row['extra'], true );
				$ours  = is_array( $extra ) && strtolower( (string) ( $extra['email'] ?? '' ) ) === $email;
			} else {
				$ours = isset( $mine[ $resource ][ (int) $row['resource_id'] ] );
			}
			if ( ! $ours ) {
				continue;
			}
			$items[] = self::item(
				'woobrevo-outbox',
				__( 'Changes waiting to be sent to Brevo (WooBrevo)', 'woobrevo' ),
				'woobrevo-outbox-' . $row['id'],
				array(
					__( 'Event', 'woobrevo' )  => (string) $row['topic'],
					__( 'Object', 'woobrevo' ) => $resource . ' ' . $row['resource_id'],
					__( 'Queued', 'woobrevo' ) => (string) $row['occurred_at'] . ' UTC',
				)
			);
		}
		return $items;
	}

	/**
	 * What the agent keeps, as WordPress export items; or one item saying it could not be fetched.
	 *
	 * @param string $email E-mail.
	 * @return array<int, array<string, mixed>>
	 */
	private function export_agent( string $email ): array {
		$url   = (string) WooBrevo_Settings::get( 'agent_url' );
		$token = (string) WooBrevo_Settings::get( 'token' );
		try {
			if ( '' === $url || '' === $token ) {
				throw new RuntimeException( __( 'no agent URL or site token is set', 'woobrevo' ) );
			}
			$groups = ( $this->client_factory )()->export( $url, $token, self::hello(), $email, self::connect_options(), self::EXPORT_TIMEOUT );
		} catch ( Throwable $e ) {
			return array(
				self::item(
					'woobrevo-agent',
					__( 'WooBrevo agent', 'woobrevo' ),
					'woobrevo-agent-unavailable',
					array(
						__( 'Not included', 'woobrevo' ) => sprintf(
							/* translators: %s: why the agent could not be asked. */
							__( 'What the WooBrevo agent keeps about this person could not be fetched (%s). Export again once the agent is reachable.', 'woobrevo' ),
							$e->getMessage()
						),
					)
				),
			);
		}
		$items = array();
		foreach ( $groups as $group ) {
			foreach ( $group['items'] as $item ) {
				$items[] = array(
					'group_id'    => $group['id'],
					'group_label' => $group['label'],
					'item_id'     => $item['id'],
					'data'        => $item['data'],
				);
			}
		}
		return $items;
	}

	/**
	 * The `hello` the exporter's connection starts with, as the shipper's.
	 *
	 * @return string
	 */
	private static function hello(): string {
		return WooBrevo_Protocol::hello(
			home_url( '/' ),
			get_current_blog_id(),
			defined( 'WOOBREVO_VERSION' ) ? WOOBREVO_VERSION : '0.0.0',
			(string) get_bloginfo( 'version' ),
			defined( 'WC_VERSION' ) ? (string) WC_VERSION : ''
		);
	}

	/**
	 * The websocket client's options from the site's settings, as the shipper's.
	 *
	 * @return array<string, mixed>
	 */
	private static function connect_options(): array {
		return array(
			'timeout'      => self::EXPORT_TIMEOUT,
			'read_timeout' => self::EXPORT_TIMEOUT,
			'verify_peer'  => '0' !== (string) WooBrevo_Settings::get( 'tls_verify' ),
			'cafile'       => (string) WooBrevo_Settings::get( 'ca_file' ),
			'user_agent'   => 'WooBrevo/' . ( defined( 'WOOBREVO_VERSION' ) ? WOOBREVO_VERSION : '0' ),
		);
	}

	/**
	 * One WordPress export item.
	 *
	 * @param string                $group_id    Group id.
	 * @param string                $group_label Group label.
	 * @param string                $item_id     Item id.
	 * @param array<string, string> $pairs       Name => value; empty values are left out.
	 * @return array<string, mixed>
	 */
	private static function item( string $group_id, string $group_label, string $item_id, array $pairs ): array {
		$data = array();
		foreach ( $pairs as $name => $value ) {
			if ( '' !== $value ) {
				$data[] = array(
					'name'  => (string) $name,
					'value' => $value,
				);
			}
		}
		return array(
			'group_id'    => $group_id,
			'group_label' => $group_label,
			'item_id'     => $item_id,
			'data'        => $data,
		);
	}
}
