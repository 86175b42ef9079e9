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
				'token'     => '' === $token ? 'not set' : 'set (' . WooBrevo_Settings::token_hint( $token ) . ')',
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
			<h1>WooBrevo: sites</h1>
			<table class="widefat striped">
				<thead><tr><th>Site</th><th>URL</th><th>Token</th><th>Connected</th><th>Last ack</th><th>Backlog</th></tr></thead>
				<tbody>
				<?php foreach ( $this->sites() as $row ) : ?>
					<tr>
						<td><?php echo esc_html( (string) $row['blog_id'] ); ?></td>
						<td><?php echo esc_html( (string) $row['url'] ); ?></td>
						<td><?php echo esc_html( $row['installed'] ? (string) $row['token'] : 'not installed' ); ?></td>
						<td><?php echo esc_html( $row['connected'] ? 'yes' : 'no' ); ?></td>
						<td><?php echo esc_html( $row['last_ack'] ? gmdate( 'Y-m-d H:i:s', (int) $row['last_ack'] ) . ' UTC' : 'never' ); ?></td>
						<td><?php echo esc_html( (string) $row['backlog'] ); ?></td>
					</tr>
				<?php endforeach; ?>
				</tbody>
			</table>
		</div>
		<?php
	}
}
