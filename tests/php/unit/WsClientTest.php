<?php
/**
 * WooBrevo_Ws_Client against real websocket servers on loopback (RFC 6455 behaviour).
 *
 * The servers are in ws_test_server.py: the `websockets` library's server (a strict peer) and
 * a raw socket server that misbehaves on purpose. The stream protocol itself is tested against
 * the agent's own server in WsClientAgentTest.php.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

defined( 'ABSPATH' ) || define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' ); // As tests/php/bootstrap.php does for pure classes.
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-ws-frame.php';
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-ws-client.php';
require_once __DIR__ . '/WsTestSupport.php';

final class WsClientTest extends TestCase {

	private const TOKEN = 'good-token';

	/** @var array{process: resource, stdin: resource, ports: array<string, int>, dir: string} */
	private static array $server;

	public static function setUpBeforeClass(): void {
		$dir = WsTestSupport::temp_dir();
		WsTestSupport::self_signed_cert( $dir, 'cert.pem', 'key.pem' );
		self::$server        = WsTestSupport::start_python( __DIR__ . '/ws_test_server.py', array( '--cert', "$dir/cert.pem", '--key', "$dir/key.pem" ) );
		self::$server['dir'] = $dir;
	}

	public static function tearDownAfterClass(): void {
		WsTestSupport::stop( self::$server );
		WsTestSupport::remove_dir( self::$server['dir'] );
	}

	private function url( string $path, string $server = 'ws' ): string {
		$scheme = 'wss' === $server ? 'wss' : 'ws';
		return sprintf( '%s://127.0.0.1:%d%s', $scheme, self::$server['ports'][ $server ], $path );
	}

	private function connected( string $path = '/echo', array $options = array() ): WooBrevo_Ws_Client {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url( $path ), self::TOKEN, $options + array( 'timeout' => 5 ) );
		return $client;
	}

	/**
	 * Runs a call that must throw, and returns the exception.
	 */
	private function thrown( string $class, callable $fn ): Throwable {
		try {
			$fn();
		} catch ( Throwable $e ) {
			$this->assertInstanceOf( $class, $e, $e->getMessage() );
			return $e;
		}
		$this->fail( "no $class thrown" );
	}

	public function test_handshake_and_echo(): void {
		$client = $this->connected();
		$this->assertTrue( $client->is_open() );
		$client->send_text( '{"type":"hello"}' );
		$this->assertSame( '{"type":"hello"}', $client->receive( 5 ) );
		$client->send_text( 'héllo wörld' );
		$this->assertSame( 'héllo wörld', $client->receive( 5 ) );
		$client->close();
		$this->assertFalse( $client->is_open() );
	}

	public function test_one_mib_message_fragmented_both_ways(): void {
		$client  = $this->connected( '/echo', array( 'fragment_size' => 65536 ) );
		$chunk   = '{"k":"' . bin2hex( random_bytes( 16 ) ) . '"},';
		$message = substr( str_repeat( $chunk, intdiv( 1 << 20, strlen( $chunk ) ) + 1 ), 0, 1 << 20 );
		$this->assertSame( 1048576, strlen( $message ) );
		$client->send_text( $message );
		// The server sends it back in 64 KiB fragments; receive() reassembles them.
		$this->assertSame( sha1( $message ), sha1( (string) $client->receive( 10 ) ) );
		$client->send_text( '__stats__' );
		$stats = json_decode( (string) $client->receive( 5 ), true );
		$this->assertSame( 16, $stats['fragments'], 'the client split 1 MiB into 16 frames' );
		$this->assertSame( 1048576, $stats['length'] );
		$this->assertSame( sha1( $message ), $stats['sha1'] );
		$client->close();
	}

	public function test_small_fragment_size(): void {
		$client = $this->connected( '/echo', array( 'fragment_size' => 3 ) );
		$client->send_text( 'Hello' );
		$this->assertSame( 'Hello', $client->receive( 5 ) );
		$client->send_text( '__stats__' );
		$this->assertSame( 2, json_decode( (string) $client->receive( 5 ), true )['fragments'] );
		$client->close();
	}

	public function test_client_ping_gets_pong(): void {
		$client = $this->connected();
		$client->ping( 'beat-1' );
		$this->assertNull( $client->receive( 0.5 ), 'a pong is not a message' );
		$this->assertSame( 'beat-1', $client->last_pong() );
		$client->send_text( 'still here' );
		$this->assertSame( 'still here', $client->receive( 5 ) );
		$client->close();
	}

	public function test_server_ping_is_answered(): void {
		$client = $this->connected( '/ping' );
		$this->assertSame( 'pong-ok', $client->receive( 5 ) );
		$client->close();
	}

	public function test_client_close_handshake(): void {
		$client = $this->connected();
		$client->close( 1000, 'done' );
		$this->assertSame( 1000, $client->close_received()['code'] );
		$this->assertFalse( $client->is_open() );
		$client->close(); // Idempotent.
	}

	public function test_server_close_is_reported_with_its_code(): void {
		$client = $this->connected( '/close' );
		$client->send_text( 'x' );
		$e = $this->thrown( RuntimeException::class, fn() => $client->receive( 5 ) );
		$this->assertSame( 1001, $e->getCode() );
		$this->assertStringContainsString( 'bye', $e->getMessage() );
		$this->assertSame( 1001, $client->close_received()['code'] );
		$this->assertFalse( $client->is_open() );
	}

	public function test_server_gone_mid_message(): void {
		$client = $this->connected( '/gone' );
		$client->send_text( 'x' );
		$e = $this->thrown( RuntimeException::class, fn() => $client->receive( 5 ) );
		$this->assertSame( 1006, $e->getCode() );
		$this->assertStringContainsString( 'went away', $e->getMessage() );
		$this->assertFalse( $client->is_open() );
		$this->thrown( RuntimeException::class, fn() => $client->send_text( 'y' ) );
	}

	public function test_wrong_accept_is_refused(): void {
		$client = new WooBrevo_Ws_Client();
		$e      = $this->thrown( RuntimeException::class, fn() => $client->connect( $this->url( '/bad-accept', 'raw' ), self::TOKEN ) );
		$this->assertSame( 1002, $e->getCode() );
		$this->assertStringContainsString( 'Sec-WebSocket-Accept', $e->getMessage() );
		$this->assertFalse( $client->is_open() );
	}

	public function test_masked_server_frame_is_a_protocol_error(): void {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url( '/masked', 'raw' ), self::TOKEN );
		$e = $this->thrown( UnexpectedValueException::class, fn() => $client->receive( 5 ) );
		$this->assertSame( 1002, $e->getCode() );
		$this->assertStringContainsString( 'masked', $e->getMessage() );
	}

	public function test_ping_between_fragments(): void {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url( '/interleaved', 'raw' ), self::TOKEN );
		$this->assertSame( 'Hello', $client->receive( 5 ) );
		$client->close( 1000, '', 0.2 );
	}

	public function test_continuation_without_start_and_bad_utf8(): void {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url( '/bad-continuation', 'raw' ), self::TOKEN );
		$this->assertSame( 1002, $this->thrown( UnexpectedValueException::class, fn() => $client->receive( 5 ) )->getCode() );
		$client->connect( $this->url( '/bad-utf8', 'raw' ), self::TOKEN );
		$this->assertSame( 1007, $this->thrown( UnexpectedValueException::class, fn() => $client->receive( 5 ) )->getCode() );
	}

	public function test_message_over_the_limit(): void {
		$client = $this->connected( '/echo', array( 'max_message_bytes' => 1000 ) );
		$client->send_text( str_repeat( 'a', 2000 ) );
		$this->assertSame( 1009, $this->thrown( UnexpectedValueException::class, fn() => $client->receive( 5 ) )->getCode() );
	}

	public function test_401_is_surfaced_without_the_token(): void {
		$client = new WooBrevo_Ws_Client();
		$secret = 'Zq9-secret-token-value-that-must-not-leak-0123456789abc';
		$e      = $this->thrown( RuntimeException::class, fn() => $client->connect( $this->url( '/v1/stream' ), $secret ) );
		$this->assertSame( 401, $e->getCode() );
		$this->assertStringContainsString( 'token refused', $e->getMessage() );
		$this->assertStringNotContainsString( $secret, $e->getMessage() );
	}

	public function test_429_with_retry_after(): void {
		$client = new WooBrevo_Ws_Client();
		$e      = $this->thrown( RuntimeException::class, fn() => $client->connect( $this->url( '/throttle' ), self::TOKEN ) );
		$this->assertSame( 429, $e->getCode() );
		$this->assertSame( 7, $client->retry_after() );
		$this->assertStringContainsString( 'retry after 7 s', $e->getMessage() );
	}

	public function test_503_surfaced(): void {
		$client = new WooBrevo_Ws_Client();
		$this->assertSame( 503, $this->thrown( RuntimeException::class, fn() => $client->connect( $this->url( '/unavailable' ), self::TOKEN ) )->getCode() );
	}

	public function test_refused_connection_is_quick(): void {
		$port = WsTestSupport::free_port();
		$t0   = microtime( true );
		$e    = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( "ws://127.0.0.1:$port/v1/stream", self::TOKEN, array( 'timeout' => 2 ) ) );
		$this->assertSame( 0, $e->getCode() );
		$this->assertStringContainsString( 'cannot connect', $e->getMessage() );
		$this->assertLessThan( 1.0, microtime( true ) - $t0 );
	}

	public function test_silent_server_costs_the_timeout_only(): void {
		$t0 = microtime( true );
		$e  = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( $this->url( '/silent', 'raw' ), self::TOKEN, array( 'timeout' => 0.5 ) ) );
		$this->assertStringContainsString( 'no handshake response', $e->getMessage() );
		$this->assertLessThan( 1.5, microtime( true ) - $t0 );
	}

	public function test_receive_timeout_returns_null_quickly(): void {
		$client = $this->connected();
		$t0     = microtime( true );
		$this->assertNull( $client->receive( 0.3 ) );
		$this->assertLessThan( 1.0, microtime( true ) - $t0 );
		$this->assertTrue( $client->is_open() );
		$client->close();
	}

	public function test_not_a_websocket_server(): void {
		$e = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( $this->url( '/not-http', 'raw' ), self::TOKEN ) );
		$this->assertStringContainsString( 'did not answer with HTTP', $e->getMessage() );
	}

	public function test_bad_url(): void {
		$e = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( 'https://agent.example/v1/stream', self::TOKEN ) );
		$this->assertStringContainsString( 'wss://', $e->getMessage() );
	}

	public function test_tls_self_signed_refused_when_verifying(): void {
		$client = new WooBrevo_Ws_Client();
		$e      = $this->thrown( RuntimeException::class, fn() => $client->connect( $this->url( '/echo', 'wss' ), self::TOKEN, array( 'timeout' => 5 ) ) );
		$this->assertStringContainsString( 'TLS', $e->getMessage() );
		$this->assertFalse( $client->is_open() );
	}

	public function test_tls_accepted_with_the_right_ca_file(): void {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url( '/echo', 'wss' ), self::TOKEN, array( 'cafile' => self::$server['dir'] . '/cert.pem' ) );
		$message = str_repeat( 'tls ', 300000 ); // 1.2 MB through TLS, fragmented both ways.
		$client->send_text( $message );
		$this->assertSame( sha1( $message ), sha1( (string) $client->receive( 10 ) ) );
		$client->ping( 'tls' );
		$this->assertNull( $client->receive( 0.3 ) );
		$this->assertSame( 'tls', $client->last_pong() );
		$client->close();
		$this->assertSame( 1000, $client->close_received()['code'] );
	}

	public function test_tls_wrong_ca_file_refused(): void {
		$dir = self::$server['dir'];
		WsTestSupport::self_signed_cert( $dir, 'other.pem', 'other-key.pem' );
		$e = $this->thrown( RuntimeException::class, fn() => ( new WooBrevo_Ws_Client() )->connect( $this->url( '/echo', 'wss' ), self::TOKEN, array( 'cafile' => "$dir/other.pem" ) ) );
		$this->assertStringContainsString( 'TLS', $e->getMessage() );
	}

	public function test_tls_without_verification_when_asked(): void {
		$client = new WooBrevo_Ws_Client();
		$client->connect( $this->url( '/echo', 'wss' ), self::TOKEN, array( 'verify_peer' => false ) );
		$client->send_text( 'insecure but asked for' );
		$this->assertSame( 'insecure but asked for', $client->receive( 5 ) );
		$client->close();
	}

	public function test_each_frame_gets_a_fresh_mask_key(): void {
		$keys   = array();
		$client = new WooBrevo_Ws_Client(
			function ( int $n ) use ( &$keys ): string {
				$bytes = random_bytes( $n );
				if ( 4 === $n ) {
					$keys[] = $bytes;
				}
				return $bytes;
			}
		);
		$client->connect( $this->url( '/echo' ), self::TOKEN, array( 'fragment_size' => 2 ) );
		$client->send_text( 'abcdef' );
		$this->assertSame( 'abcdef', $client->receive( 5 ) );
		$this->assertCount( 3, $keys );
		$this->assertCount( 3, array_unique( $keys ) );
		$client->close();
	}
}
