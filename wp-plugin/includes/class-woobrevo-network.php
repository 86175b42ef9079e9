<?php
/**
 * Network admin screen: every site with its token state, last ack and backlog.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Network Admin → Settings → WooBrevo.
 */
final class WooBrevo_Network {

	/** Who may see the network screen. */
	public const CAPABILITY = 'manage_network_options';

	/**
	 * Adds the screen to the network admin.
	 *
	 * @return void
	 */
	public function action_network_admin_menu(): void {
		add_submenu_page( 'settings.php', 'WooBrevo', 'WooBrevo', self::CAPABILITY, 'woobrevo-network', array( $this, 'render' ) );
	}

	/**
	 * One row per site: id, URL, installed, token state, connected, last ack, backlog.
	 *
	 * @return array<int, array<string, mixed>>
	 */
	public function sites(): array {
		$rows = array();
		foreach ( get_sites( array( 'number' => 0 ) ) as $site ) {
			switch_to_blog( (int) $site->blog_id );
			$installed = WooBrevo_Schema::is_installed();
			$token     = (string) WooBrevo_Settings::get( 'token' );
			$rows[]    = array(
				'blog_id'   => (int) $site->blog_id,
				'url'       => home_url( '/' ),
				'installed' => $installed,
				'token'     => WooBrevo_Settings::token_state( $token ),
				'connected' => (int) WooBrevo_Settings::get( 'connected' ) > 0,
				'last_ack'  => (int) WooBrevo_Settings::get( 'last_ack' ),
				'backlog'   => $installed ? ( new WooBrevo_Outbox() )->depth() : 0,
			);
			restore_current_blog();
		}
		return $rows;
	}

	/**
	 * The table.
	 *
	 * @return void
	 */
	public function render(): void {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to manage WooBrevo.', 'woobrevo' ), 403 );
		}
		?>
		<div class="wrap woobrevo-network">
			<h1><?php esc_html_e( 'WooBrevo: sites', 'woobrevo' ); ?></h1>
			<table class="widefat striped">
				<thead><tr><th><?php esc_html_e( 'Site', 'woobrevo' ); ?></th><th><?php esc_html_e( 'URL', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Token', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Connected', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Last ack', 'woobrevo' ); ?></th><th><?php esc_html_e( 'Backlog', 'woobrevo' ); ?></th></tr></thead>
				<tbody>
				<?php foreach ( $this->sites() as $row ) : ?>
					<tr>
						<td><?php echo esc_html( (string) $row['blog_id'] ); ?></td>
						<td><?php echo esc_html( (string) $row['url'] ); ?></td>
						<td><?php echo esc_html( $row['installed'] ? (string) $row['token'] : __( 'not installed', 'woobrevo' ) ); ?></td>
						<td><?php echo esc_html( $row['connected'] ? __( 'yes', 'woobrevo' ) : __( 'no', 'woobrevo' ) ); ?></td>
						<td><?php echo esc_html( WooBrevo_Settings::time_text( (int) $row['last_ack'] ) ); ?></td>
						<td><?php echo esc_html( (string) $row['backlog'] ); ?></td>
					</tr>
				<?php endforeach; ?>
				</tbody>
			</table>
		</div>
		<?php
	}
}
