<?php
/**
 * WooBrevo_Ws_Client against the agent's real websocket server (agent/doors/stream.py) on
 * loopback: handshake and token, hello/welcome, large fragmented batches, pings both ways,
 * close, the agent's limits, TLS, and the agent dying mid-batch.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

defined( 'ABSPATH' ) || define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' ); // As tests/php/bootstrap.php does for pure classes.
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-ws-frame.php';
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-ws-client.php';
require_once __DIR__ . '/WsTestSupport.php';

final class WsClientAgentTest extends TestCase {

	private const TOKEN = 'T0k3n-for-the-php-client-test_abcdefghijklmnopqrstuvwxyz012';

	/** @var array<string, mixed> The agent over wss, with short pings and a 2 MiB message limit. */
	private static array $agent;

	private static string $dir;

	public static function setUpBeforeClass(): void {
		self::$dir = WsTestSupport::temp_dir();
		WsTestSupport::self_signed_cert( self::$dir, 'cert.pem', 'key.pem' );
		self::$agent = WsTestSupport::start_agent(
			self::$dir,
			array(
				'tls'    => array(
					'cert' => self::$dir . '/cert.pem',
					'key'  => self::$dir . '/key.pem',
				),
				'stream' => array(
					'ping_interval'                    => '300ms',
					'ping_timeout'                     => '1s',
					'max_message_bytes'                => 2 * 1048576,
					'max_failed_handshakes_per_minute' => 5,
				),
			),
			array(
				array(
					'id'    => 'default',
					'token' => self::TOKEN,
				),
			)
		);
	}

	public static function tearDownAfterClass(): void {
		WsTestSupport::stop_agent( self::$agent );
		WsTestSupport::remove_dir( self::$dir . '/state' );
		WsTestSupport::remove_dir( self::$dir );
	}

	private function url( string $path = '/v1/stream' ): string {
		return sprintf( 'wss://127.0.0.1:%d%s', self::$agent['port'], $path );
	}

	private function client( array $options = array() ): WooBrevo_Ws_Client {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url(), self::TOKEN, $options + array( 'cafile' => self::$dir . '/cert.pem' ) );
		return $client;
	}

	private function welcome( WooBrevo_Ws_Client $client ): array {
		$client->send_text( WsTestSupport::hello() );
		$welcome = json_decode( (string) $client->receive( 10 ), true );
		$this->assertSame( 'welcome', $welcome['type'] );
		return $welcome;
	}

	private function thrown( string $class, callable $fn ): Throwable {
		try {
			$fn();
		} catch ( Throwable $e ) {
			$this->assertInstanceOf( $class, $e, $e->getMessage() );
			return $e;
		}
		$this->fail( "no $class thrown" );
	}

	public function test_handshake_hello_welcome(): void {
		$client  = $this->client();
		$welcome = $this->welcome( $client );
		$this->assertSame( 'default', $welcome['site'] );
		$this->assertSame( 1, $welcome['protocol'] );
		$this->assertSame( 2 * 1048576, $welcome['max_message_bytes'] );
		$this->assertIsArray( $welcome['watch_meta'] );
		// hello again is the heartbeat: another welcome.
		$this->assertSame( 'welcome', $this->welcome( $client )['type'] );
		$client->close();
		$this->assertSame( 1000, $client->close_received()['code'] );
	}

	public function test_one_mib_batch_fragmented_is_acked(): void {
		$client = $this->client( array( 'fragment_size' => 16384 ) );
		$this->welcome( $client );
		list( $message, $ids ) = WsTestSupport::events( 'b-big', 'aa11bb22-' . bin2hex( random_bytes( 3 ) ), 100, 10400 );
		$this->assertGreaterThan( 1048576, strlen( $message ) );
		$client->send_text( $message );
		$ack = json_decode( (string) $client->receive( 20 ), true );
		$this->assertSame( 'ack', $ack['type'] );
		$this->assertSame( 'b-big', $ack['batch'] );
		$rejected = array_column( $ack['rejected'], 'id' );
		$all      = array_merge( $ack['accepted'], $rejected );
		sort( $all );
		sort( $ids );
		$this->assertSame( $ids, $all, 'accepted ∪ rejected is exactly the batch' );
		// A resend after a lost ack is acked again the same way.
		$client->send_text( $message );
		$again = json_decode( (string) $client->receive( 20 ), true );
		$this->assertSame( $ack['accepted'], $again['accepted'] );
		$client->close();
	}

	public function test_agent_pings_are_answered(): void {
		$client = $this->client();
		$this->welcome( $client );
		// The agent pings every 0.3 s and gives up after 1 s without a pong; receive() answers.
		$this->assertNull( $client->receive( 2.5 ) );
		$this->assertTrue( $client->is_open() );
		$this->assertSame( 'welcome', $this->welcome( $client )['type'] );
		$client->ping( 'plugin-ping' );
		$this->assertNull( $client->receive( 0.3 ) );
		$this->assertSame( 'plugin-ping', $client->last_pong() );
		$client->close();
	}

	public function test_message_over_the_agent_limit_closes_1009(): void {
		$client = $this->client();
		$this->welcome( $client );
		// Just over the limit (~17 KB): the agent fails the connection at the frame that crosses
		// it, and the client writes the rest of the message before it reads the close. Kept
		// small so that rest fits in the sockets' buffers: one CI run, ~118 KB over, timed out
		// writing instead.
		list( $message ) = WsTestSupport::events( 'b-huge', 'cc33dd44-1', 100, 21000 );
		$this->assertGreaterThan( 2 * 1048576, strlen( $message ) );
		$this->assertLessThan( 2 * 1048576 + 32768, strlen( $message ) );
		$client->send_text( $message );
		$e = $this->thrown( RuntimeException::class, fn() => $client->receive( 10 ) );
		$this->assertSame( 1009, $e->getCode() );
	}

	public function test_events_before_hello_is_a_protocol_error(): void {
		$client = $this->client();
		list( $message ) = WsTestSupport::events( 'b-early', 'ee55ff66-1', 1 );
		$client->send_text( $message );
		$error = json_decode( (string) $client->receive( 5 ), true );
		$this->assertSame( 'error', $error['type'] );
		$this->assertSame( 'hello_required', $error['code'] );
		$this->assertSame( 1008, $this->thrown( RuntimeException::class, fn() => $client->receive( 5 ) )->getCode() );
	}

	public function test_self_signed_agent_refused_without_the_ca_file(): void {
		$e = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( $this->url(), self::TOKEN, array( 'timeout' => 5 ) ) );
		$this->assertStringContainsString( 'TLS', $e->getMessage() );
		$this->assertStringNotContainsString( self::TOKEN, $e->getMessage() );
	}

	public function test_wrong_path_is_404(): void {
		$e = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( $this->url( '/v1/other' ), self::TOKEN, array( 'cafile' => self::$dir . '/cert.pem' ) ) );
		$this->assertSame( 404, $e->getCode() );
	}

	/**
	 * Runs late: refused tokens also feed the agent's per-address throttle.
	 */
	public function test_bad_token_is_401_then_throttled_429(): void {
		$options = array( 'cafile' => self::$dir . '/cert.pem' );
		$bad     = 'not-the-token-' . bin2hex( random_bytes( 16 ) );
		$e       = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( $this->url(), $bad, $options ) );
		$this->assertSame( 401, $e->getCode() );
		$this->assertStringContainsString( 'token refused', $e->getMessage() );
		$this->assertStringNotContainsString( $bad, $e->getMessage() );
		for ( $i = 0; $i < 10; $i++ ) {
			$client = new WooBrevo_Ws_Client();
			try {
				$client->connect( $this->url(), $bad, $options );
			} catch ( RuntimeException $e ) {
				if ( 429 === $e->getCode() ) {
					$this->assertGreaterThan( 0, $client->retry_after() );
					return;
				}
				$this->assertSame( 401, $e->getCode() );
			}
		}
		$this->fail( 'never throttled' );
	}

	public function test_agent_gone_mid_batch(): void {
		$dir   = WsTestSupport::temp_dir();
		$agent = WsTestSupport::start_agent(
			$dir,
			array(),
			array(
				array(
					'id'    => 'default',
					'token' => self::TOKEN,
				),
			)
		);
		try {
			$client = new WooBrevo_Ws_Client();
			$client->connect( sprintf( 'ws://127.0.0.1:%d/v1/stream', $agent['port'] ), self::TOKEN );
			$this->welcome( $client );
			list( $message ) = WsTestSupport::events( 'b-lost', '0a0b0c0d-' . bin2hex( random_bytes( 3 ) ), 50, 1000 );
			WsTestSupport::stop_agent( $agent, true ); // SIGKILL: no close frame, no ack.
			$e = $this->thrown(
				RuntimeException::class,
				function () use ( $client, $message ) {
					$client->send_text( $message );
					$client->receive( 5 );
				}
			);
			$this->assertSame( 1006, $e->getCode() );
			$this->assertFalse( $client->is_open() );
			// A dead agent costs a bounded, short time.
			$t0 = microtime( true );
			$this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( sprintf( 'ws://127.0.0.1:%d/v1/stream', $agent['port'] ), self::TOKEN, array( 'timeout' => 2 ) ) );
			$this->assertLessThan( 2.5, microtime( true ) - $t0 );
		} finally {
			WsTestSupport::stop_agent( $agent, true );
			WsTestSupport::remove_dir( "$dir/state" );
			WsTestSupport::remove_dir( $dir );
		}
	}
}
