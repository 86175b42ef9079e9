<?php
/**
 * `wp woobrevo status|flush|stream|set-token`: thin commands over methods the tests call directly.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * Manages the WooBrevo outbox and connection.
 */
final class WooBrevo_Cli {

	/**
	 * What `status` prints, as data.
	 *
	 * @return array<string, mixed>
	 */
	public static function status_data(): array {
		$outbox = new WooBrevo_Outbox();
		$token  = (string) WooBrevo_Settings::get( 'token' );
		return array(
			'blog_id'    => get_current_blog_id(),
			'agent_url'  => (string) WooBrevo_Settings::get( 'agent_url' ),
			'token'      => WooBrevo_Settings::token_state( $token ),
			'connected'  => (int) WooBrevo_Settings::get( 'connected' ) > 0 ? __( 'yes', 'woobrevo' ) : __( 'no', 'woobrevo' ),
			'last_ack'   => (int) WooBrevo_Settings::get( 'last_ack' ),
			'last_error' => (string) WooBrevo_Settings::get( 'last_error' ),
			'depth'      => $outbox->depth(),
			'rejected'   => count( $outbox->rejected( 100 ) ),
		);
	}

	/**
	 * Ticks until the outbox is empty, nothing more gets acked, or $max_ticks is reached.
	 *
	 * @param int $max_ticks Most ticks.
	 * @return array{ticks:int,acked:int,depth:int,error:?string}
	 */
	public static function flush_outbox( int $max_ticks = 100 ): array {
		$outbox = new WooBrevo_Outbox();
		$result = array(
			'ticks' => 0,
			'acked' => 0,
			'depth' => $outbox->depth(),
			'error' => null,
		);
		while ( $result['depth'] > 0 && $result['ticks'] < $max_ticks ) {
			$stats = WooBrevo_Plugin::shipper()->tick();
			++$result['ticks'];
			$result['acked'] += (int) ( $stats['acked'] ?? 0 ) + (int) ( $stats['rejected'] ?? 0 );
			$result['depth']  = $outbox->depth();
			$result['error']  = $stats['error'] ?? ( $stats['skipped'] ?? null );
			if ( 0 === (int) ( $stats['acked'] ?? 0 ) + (int) ( $stats['rejected'] ?? 0 ) ) {
				break;
			}
		}
		return $result;
	}

	/**
	 * Stores a site token (never printed back).
	 *
	 * @param string $token Token.
	 * @return void
	 * @throws InvalidArgumentException For an empty or malformed token.
	 */
	public static function store_token( string $token ): void {
		$token = trim( $token );
		if ( ! preg_match( '/^[A-Za-z0-9_\-]{16,}$/', $token ) ) {
			throw new InvalidArgumentException( __( 'a token is 16+ URL-safe base64 characters', 'woobrevo' ) );
		}
		WooBrevo_Settings::set( 'token', $token );
	}

	/**
	 * Shows the connection state and outbox depth.
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 * @return void
	 */
	public function status( $args, $assoc_args ): void {
		foreach ( self::status_data() as $key => $value ) {
			WP_CLI::line( sprintf( '%-10s %s', $key, is_scalar( $value ) ? (string) $value : wp_json_encode( $value ) ) );
		}
	}

	/**
	 * Ships everything waiting now.
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 * @return void
	 */
	public function flush( $args, $assoc_args ): void {
		$result = self::flush_outbox();
		if ( $result['depth'] > 0 ) {
			WP_CLI::error(
				sprintf(
					/* translators: 1: rows still in the outbox, 2: shipper ticks run, 3: the last error or why the tick was skipped. */
					_n( '%1$d row still waiting after %2$d ticks: %3$s', '%1$d rows still waiting after %2$d ticks: %3$s', (int) $result['depth'], 'woobrevo' ),
					$result['depth'],
					$result['ticks'],
					(string) $result['error']
				)
			);
		}
		WP_CLI::success(
			sprintf(
				/* translators: 1: events the agent acknowledged, 2: shipper ticks run. */
				_n( 'outbox empty; %1$d event acked in %2$d ticks', 'outbox empty; %1$d events acked in %2$d ticks', (int) $result['acked'], 'woobrevo' ),
				$result['acked'],
				$result['ticks']
			)
		);
	}

	/**
	 * Keeps one connection open and ships as rows appear.
	 *
	 * ## OPTIONS
	 *
	 * [--max-seconds=<n>]
	 * : Stop after n seconds (0: run until stopped).
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 * @return void
	 */
	public function stream( $args, $assoc_args ): void {
		WooBrevo_Plugin::shipper()->stream( (int) ( $assoc_args['max-seconds'] ?? 0 ) );
	}

	/**
	 * Stores the site token; the site ends its backoff and ships as the command ends.
	 *
	 * ## OPTIONS
	 *
	 * <token>
	 * : The token `woobrevo-agent token create` printed.
	 *
	 * @subcommand set-token
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 * @return void
	 */
	public function set_token( $args, $assoc_args ): void {
		try {
			self::store_token( (string) ( $args[0] ?? '' ) );
		} catch ( InvalidArgumentException $e ) {
			WP_CLI::error( $e->getMessage() );
		}
		WP_CLI::success( __( 'token stored; the site connects to the agent as this command ends (then see `wp woobrevo status`)', 'woobrevo' ) );
	}
}
