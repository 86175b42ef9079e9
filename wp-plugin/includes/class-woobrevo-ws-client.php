<?php
/**
 * RFC 6455 websocket client on stream_socket_client. No WordPress dependency.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

defined( 'ABSPATH' ) || exit;

/**
 * A blocking websocket client with bounded waits, for the shipper and the personal-data exporter.
 *
 * Every failure is an exception whose message is safe to show an admin (it never contains the
 * token) and whose code tells the caller what to do:
 * - RuntimeException, code = HTTP status (401 token refused, 429 throttled — see retry_after(),
 *   404 wrong URL, 503 agent shutting down, other statuses) when the upgrade is refused;
 * - RuntimeException, code = close code (1000-4999) when the agent closed the connection;
 * - RuntimeException, code 1006 when the connection was lost or timed out mid-operation,
 *   code 0 when it could not be opened (DNS, refused, TLS);
 * - UnexpectedValueException, code = close code (1002, 1007, 1009) on a protocol violation by
 *   the server (the client has already sent the close frame).
 */
final class WooBrevo_Ws_Client {

	/** Default options for connect(). */
	private const DEFAULTS = array(
		'timeout'           => 5.0,     // Seconds for TCP connect + TLS + upgrade.
		'read_timeout'      => 10.0,    // Seconds a single read or write may block.
		'verify_peer'       => true,    // TLS peer and host name verification.
		'cafile'            => '',      // PEM bundle to trust instead of the system store.
		'headers'           => array(), // Extra request headers, name => value.
		'fragment_size'     => 65536,   // Outgoing messages are split into frames of this size.
		'max_message_bytes' => 16777216, // Largest incoming message accepted (1009 above it).
		'user_agent'        => 'WooBrevo',
	);

	/** @var resource|null The socket. */
	private $socket = null;

	/** @var string Bytes read but not decoded yet. */
	private string $buffer = '';

	/** @var array<string, mixed> Options of the current connection. */
	private array $options = self::DEFAULTS;

	/** @var string The token, kept only to scrub it from messages. */
	private string $token = '';

	/** @var int|null Opcode of the message being reassembled. */
	private ?int $partial_opcode = null;

	/** @var string Fragments of the message being reassembled. */
	private string $partial = '';

	/** @var bool Whether our close frame has been sent. */
	private bool $close_sent = false;

	/** @var int|null Seconds from the last 429's Retry-After header. */
	private ?int $retry_after = null;

	/** @var array{code: int, reason: string}|null The close frame the server sent. */
	private ?array $close_received = null;

	/** @var string|null Payload of the last pong received. */
	private ?string $last_pong = null;

	/** @var callable(int): string Randomness (mask keys, handshake key); injectable for tests. */
	private $random;

	/**
	 * Creates an unconnected client.
	 *
	 * @param callable(int): string|null $random Source of random bytes; random_bytes by default.
	 */
	public function __construct( ?callable $random = null ) {
		$this->random = $random ?? 'random_bytes';
	}

	/**
	 * Closes the socket without a close handshake when the object goes away.
	 */
	public function __destruct() {
		$this->drop();
	}

	/**
	 * Opens the connection and performs the opening handshake (RFC 6455 §4.1).
	 *
	 * @param string               $url     ws:// or wss:// URL.
	 * @param string               $token   Bearer token sent in the Authorization header.
	 * @param array<string, mixed> $options See DEFAULTS.
	 * @throws RuntimeException|UnexpectedValueException See the class comment.
	 */
	public function connect( string $url, string $token, array $options = array() ): void {
		$this->reset( $token, $options );
		$target   = self::parse_url( $url );
		$deadline = microtime( true ) + (float) $this->options['timeout'];

		$this->socket = $this->open_socket( $target );
		stream_set_blocking( $this->socket, true );

		$key = base64_encode( ( $this->random )( 16 ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- RFC 6455 §4.1.
		$this->write_all( $this->upgrade_request( $target, $key ), $deadline, 'sending the handshake to ' . $target['shown'] );
		list( $status_line, $headers ) = $this->read_response_head( $target['shown'], $deadline );
		$this->check_response( $status_line, $headers, $key, $target['shown'] );
	}

	/**
	 * Asks the agent what it holds about one e-mail (the exporter's question): a connection of
	 * its own with the site token, hello and welcome, one `export`, then its `export_result`,
	 * all within $timeout seconds; closed before returning. It sends no events, so the agent
	 * keeps the shipper's connection as it is.
	 *
	 * @param string               $url     ws:// or wss:// agent URL.
	 * @param string               $token   Site token.
	 * @param string               $hello   The `hello` message (WooBrevo_Protocol::hello()).
	 * @param string               $email   The person's e-mail.
	 * @param array<string, mixed> $options See DEFAULTS.
	 * @param float                $timeout Seconds for the whole exchange.
	 * @return list<array{id: string, label: string, items: list<array{id: string, data: list<array{name: string, value: string}>}>}> The agent's groups.
	 * @throws RuntimeException|UnexpectedValueException When the agent cannot be reached, refuses,
	 *         answers with an `error`, or does not answer in time (see the class comment).
	 */
	public function export( string $url, string $token, string $hello, string $email, array $options = array(), float $timeout = 5.0 ): array {
		$deadline = microtime( true ) + $timeout;
		$options  = array_merge( $options, array( 'timeout' => min( (float) ( $options['timeout'] ?? $timeout ), $timeout ) ) );
		$this->connect( $url, $token, $options );
		try {
			$this->send_text( $hello );
			$this->await( 'welcome', null, $deadline );
			$request = 'export-' . bin2hex( ( $this->random )( 6 ) );
			$this->send_text( WooBrevo_Protocol::export( $request, $email ) );
			$result = $this->await( 'export_result', $request, $deadline );
		} catch ( Throwable $e ) {
			$this->drop();
			throw $e;
		}
		$this->close( WooBrevo_Ws_Frame::CLOSE_NORMAL, '', 0.5 );
		return $result['groups'];
	}

	/**
	 * Receives protocol messages until one of $type (with request id $request, when given) comes;
	 * others are skipped, an `error` is thrown.
	 *
	 * @param string      $type     Message type waited for.
	 * @param string|null $request  Request id the message must carry, or null.
	 * @param float       $deadline microtime(true) limit.
	 * @return array<string, mixed> The message, as WooBrevo_Protocol::parse() gives it.
	 * @throws RuntimeException On an `error`, or when nothing comes in time (code 1006).
	 */
	private function await( string $type, ?string $request, float $deadline ): array {
		while ( true ) {
			$text = $this->receive( max( 0.0, $deadline - microtime( true ) ) );
			if ( null === $text ) {
				throw new RuntimeException( sprintf( 'no %s from the agent in time', $type ), WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
			}
			$message = WooBrevo_Protocol::parse( $text );
			if ( 'error' === $message['type'] ) {
				throw new RuntimeException( $this->scrub( sprintf( 'the agent answered %s: %s', $message['code'], $message['message'] ) ) );
			}
			if ( $type === $message['type'] && ( null === $request || $request === $message['request'] ) ) {
				return $message;
			}
		}
	}

	/**
	 * Forgets the previous connection and its state; takes the new token and options.
	 *
	 * @param string               $token   Bearer token (kept only to scrub it from messages).
	 * @param array<string, mixed> $options See DEFAULTS.
	 */
	private function reset( string $token, array $options ): void {
		$this->drop();
		$this->options        = array_merge( self::DEFAULTS, $options );
		$this->token          = $token;
		$this->buffer         = '';
		$this->partial        = '';
		$this->partial_opcode = null;
		$this->close_sent     = false;
		$this->close_received = null;
		$this->retry_after    = null;
	}

	/**
	 * The TCP connection, with the TLS handshake for wss://, within the `timeout` option.
	 *
	 * @param array{tls: bool, host: string, connect_host: string, host_header: string, port: int, path: string, shown: string} $target From parse_url().
	 * @return resource
	 * @throws RuntimeException When it cannot be opened (code 0).
	 */
	private function open_socket( array $target ) {
		$context  = $this->stream_context( $target );
		$remote   = ( $target['tls'] ? 'tls://' : 'tcp://' ) . $target['connect_host'] . ':' . $target['port'];
		$errno    = 0;
		$errstr   = '';
		$warnings = array();
		// PHP reports TLS failures (certificate verify failed…) as warnings, not in $errstr:
		// collect them for the message instead of printing them.
		set_error_handler( // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_set_error_handler -- scoped to this call.
			static function ( int $severity, string $message ) use ( &$warnings ): bool {
				$warnings[] = preg_replace( '/^stream_socket_client\(\): /', '', $message );
				return true;
			}
		);
		try {
			// The timeout of stream_socket_client() covers the TCP connect and, for tls://, the
			// TLS handshake, so an agent that is down or black-holed costs at most `timeout`.
			$socket = stream_socket_client( $remote, $errno, $errstr, (float) $this->options['timeout'], STREAM_CLIENT_CONNECT, $context );
		} finally {
			restore_error_handler();
		}
		if ( false === $socket ) {
			$detail = implode( '; ', array_unique( array_filter( array_merge( $warnings, array( $errstr ) ) ) ) );
			if ( $target['tls'] && preg_match( '/certificate|crypto|SSL operation|OpenSSL/i', $detail ) ) {
				throw new RuntimeException( $this->scrub( sprintf( 'TLS handshake with %s failed (certificate not trusted, or not for this host name): %s', $target['shown'], $detail ) ) );
			}
			throw new RuntimeException( $this->scrub( sprintf( 'cannot connect to %s: %s', $target['shown'], '' !== $detail ? $detail : 'connection failed' ) ) );
		}
		return $socket;
	}

	/**
	 * The stream context: for wss://, peer verification (unless turned off), SNI and the CA file.
	 *
	 * @param array{tls: bool, host: string} $target From parse_url().
	 * @return resource
	 */
	private function stream_context( array $target ) {
		$context = stream_context_create();
		if ( $target['tls'] ) {
			$ssl = array(
				'verify_peer'       => (bool) $this->options['verify_peer'],
				'verify_peer_name'  => (bool) $this->options['verify_peer'],
				'allow_self_signed' => false,
				'peer_name'         => $target['host'],
				'SNI_enabled'       => true,
				'disable_compression' => true,
			);
			if ( '' !== (string) $this->options['cafile'] ) {
				$ssl['cafile'] = (string) $this->options['cafile'];
			}
			stream_context_set_option( $context, array( 'ssl' => $ssl ) );
		}
		return $context;
	}

	/**
	 * The opening handshake's request (RFC 6455 §4.1), with the bearer token.
	 *
	 * @param array{path: string, host_header: string} $target From parse_url().
	 * @param string                                   $key    Sec-WebSocket-Key.
	 * @return string
	 */
	private function upgrade_request( array $target, string $key ): string {
		$request = 'GET ' . $target['path'] . " HTTP/1.1\r\n"
			. 'Host: ' . $target['host_header'] . "\r\n"
			. "Upgrade: websocket\r\n"
			. "Connection: Upgrade\r\n"
			. 'Sec-WebSocket-Key: ' . $key . "\r\n"
			. "Sec-WebSocket-Version: 13\r\n"
			. 'Authorization: Bearer ' . $this->token . "\r\n"
			. 'User-Agent: ' . self::header_value( (string) $this->options['user_agent'] ) . "\r\n";
		foreach ( (array) $this->options['headers'] as $name => $value ) {
			$request .= self::header_value( (string) $name ) . ': ' . self::header_value( (string) $value ) . "\r\n";
		}
		return $request . "\r\n";
	}

	/**
	 * Reads the response head; bytes after it (a frame sent at once) stay in the buffer.
	 *
	 * @param string $shown    URL safe to show.
	 * @param float  $deadline microtime(true) limit.
	 * @return array{0: string, 1: array<string, string>} The status line and the lower-cased headers.
	 * @throws RuntimeException When it is too long or does not come in time (code 1006).
	 */
	private function read_response_head( string $shown, float $deadline ): array {
		while ( false === ( $end = strpos( $this->buffer, "\r\n\r\n" ) ) ) {
			if ( strlen( $this->buffer ) > 16384 ) {
				$this->drop();
				throw new RuntimeException( $this->scrub( sprintf( 'handshake response from %s is too long', $shown ) ), 1006 );
			}
			if ( ! $this->read_some( $deadline ) ) {
				$this->drop();
				throw new RuntimeException( $this->scrub( sprintf( 'no handshake response from %s within %.1f s', $shown, (float) $this->options['timeout'] ) ), 1006 );
			}
		}
		$head         = substr( $this->buffer, 0, $end );
		$this->buffer = (string) substr( $this->buffer, $end + 4 );
		$lines        = explode( "\r\n", $head );
		$status_line  = (string) array_shift( $lines );
		$headers      = array();
		foreach ( $lines as $line ) {
			$colon = strpos( $line, ':' );
			if ( false !== $colon ) {
				$headers[ strtolower( trim( substr( $line, 0, $colon ) ) ) ] = trim( substr( $line, $colon + 1 ) );
			}
		}
		return array( $status_line, $headers );
	}

	/**
	 * Accepts the server's handshake (RFC 6455 §4.1, client steps 1-6) or drops the connection.
	 *
	 * @param string                $status_line The response's status line.
	 * @param array<string, string> $headers     Lower-cased response headers.
	 * @param string                $key         The Sec-WebSocket-Key sent.
	 * @param string                $shown       URL safe to show.
	 * @throws RuntimeException Not HTTP (1006), a refused upgrade (the HTTP status), a broken handshake (1002).
	 */
	private function check_response( string $status_line, array $headers, string $key, string $shown ): void {
		if ( ! preg_match( '#^HTTP/1\.[01] (\d{3})#', $status_line, $m ) ) {
			$this->drop();
			throw new RuntimeException( $this->scrub( sprintf( '%s did not answer with HTTP (is it a websocket endpoint?)', $shown ) ), 1006 );
		}
		$status = (int) $m[1];
		if ( 101 !== $status ) {
			$this->drop();
			throw $this->status_error( $status, $headers, $shown );
		}
		$problem = self::handshake_problem( $headers, $key );
		if ( null !== $problem ) {
			$this->drop();
			throw new RuntimeException( $this->scrub( sprintf( 'websocket handshake with %s failed: %s', $shown, $problem ) ), 1002 );
		}
	}

	/**
	 * What is wrong with a 101 response's headers (RFC 6455 §4.1, client steps 2-6), or null.
	 *
	 * @param array<string, string> $headers Lower-cased response headers.
	 * @param string                $key     The Sec-WebSocket-Key sent.
	 * @return string|null
	 */
	private static function handshake_problem( array $headers, string $key ): ?string {
		if ( 'websocket' !== strtolower( $headers['upgrade'] ?? '' ) ) {
			return 'no "Upgrade: websocket" header';
		}
		if ( ! in_array( 'upgrade', array_map( 'trim', explode( ',', strtolower( $headers['connection'] ?? '' ) ) ), true ) ) {
			return 'no "Connection: Upgrade" header';
		}
		if ( ! hash_equals( WooBrevo_Ws_Frame::accept_key( $key ), $headers['sec-websocket-accept'] ?? '' ) ) {
			return 'wrong Sec-WebSocket-Accept';
		}
		if ( '' !== ( $headers['sec-websocket-extensions'] ?? '' ) ) {
			return 'an extension was negotiated that was not offered';
		}
		return null;
	}

	/**
	 * Whether the connection is open (handshake done, no close sent or received).
	 *
	 * @return bool
	 */
	public function is_open(): bool {
		return null !== $this->socket && ! $this->close_sent && null === $this->close_received;
	}

	/**
	 * Sends a text message, split into frames of `fragment_size` bytes (RFC 6455 §5.4).
	 *
	 * @param string $text UTF-8 text, e.g. a JSON document.
	 * @throws RuntimeException When the connection is closed or lost.
	 */
	public function send_text( string $text ): void {
		$this->send_message( WooBrevo_Ws_Frame::OP_TEXT, $text );
	}

	/**
	 * Sends a ping (RFC 6455 §5.5.2); its pong is recorded by receive().
	 *
	 * @param string $data Up to 125 bytes.
	 * @throws RuntimeException When the connection is closed or lost.
	 */
	public function ping( string $data = '' ): void {
		$this->require_open();
		$this->send_frame( WooBrevo_Ws_Frame::OP_PING, $data );
	}

	/**
	 * Payload of the last pong received, or null.
	 *
	 * @return string|null
	 */
	public function last_pong(): ?string {
		return $this->last_pong;
	}

	/**
	 * Waits for the next complete message, answering pings and reassembling fragments.
	 *
	 * @param float $timeout Seconds to wait for a whole message.
	 * @return string|null The message (text or binary), or null if none arrived in time.
	 * @throws RuntimeException|UnexpectedValueException When the server closes the connection
	 *         (code = its close code), the connection is lost, or the server breaks the protocol.
	 */
	public function receive( float $timeout ): ?string {
		$this->require_open();
		$deadline = microtime( true ) + $timeout;
		while ( true ) {
			$frame = $this->next_frame( $deadline );
			if ( null === $frame ) {
				return null;
			}
			$opcode = $frame['opcode'];
			if ( WooBrevo_Ws_Frame::OP_PING === $opcode ) {
				// RFC 6455 §5.5.2: answer with a pong carrying the same data, as soon as practical.
				$this->send_frame( WooBrevo_Ws_Frame::OP_PONG, $frame['payload'] );
				continue;
			}
			if ( WooBrevo_Ws_Frame::OP_PONG === $opcode ) {
				$this->last_pong = $frame['payload'];
				continue;
			}
			if ( WooBrevo_Ws_Frame::OP_CLOSE === $opcode ) {
				$this->on_close_frame( $frame['payload'] );
			}
			if ( WooBrevo_Ws_Frame::OP_CONTINUATION === $opcode ) {
				if ( null === $this->partial_opcode ) {
					$this->fail( WooBrevo_Ws_Frame::CLOSE_PROTOCOL_ERROR, 'continuation frame without a message to continue' );
				}
			} elseif ( null !== $this->partial_opcode ) {
				$this->fail( WooBrevo_Ws_Frame::CLOSE_PROTOCOL_ERROR, 'new message before the previous one was finished' );
			} else {
				$this->partial_opcode = $opcode;
			}
			if ( strlen( $this->partial ) + strlen( $frame['payload'] ) > (int) $this->options['max_message_bytes'] ) {
				$this->fail( WooBrevo_Ws_Frame::CLOSE_TOO_BIG, sprintf( 'message over %d bytes', (int) $this->options['max_message_bytes'] ) );
			}
			$this->partial .= $frame['payload'];
			if ( ! $frame['fin'] ) {
				continue;
			}
			$message              = $this->partial;
			$message_opcode       = $this->partial_opcode;
			$this->partial        = '';
			$this->partial_opcode = null;
			if ( WooBrevo_Ws_Frame::OP_TEXT === $message_opcode && ! WooBrevo_Ws_Frame::is_utf8( $message ) ) {
				$this->fail( WooBrevo_Ws_Frame::CLOSE_INVALID_DATA, 'text message is not valid UTF-8' );
			}
			return $message;
		}
	}

	/**
	 * Starts the closing handshake (RFC 6455 §7.1.2) and waits briefly for the server's close.
	 *
	 * Never throws: a connection that is already gone is simply dropped.
	 *
	 * @param int    $code    Close code.
	 * @param string $reason  Short reason.
	 * @param float  $timeout Seconds to wait for the server's close frame.
	 */
	public function close( int $code = WooBrevo_Ws_Frame::CLOSE_NORMAL, string $reason = '', float $timeout = 2.0 ): void {
		if ( null === $this->socket ) {
			return;
		}
		try {
			if ( ! $this->close_sent && null === $this->close_received ) {
				$this->send_frame( WooBrevo_Ws_Frame::OP_CLOSE, WooBrevo_Ws_Frame::close_payload( $code, $reason ) );
				$this->close_sent = true;
			}
			$deadline = microtime( true ) + $timeout;
			while ( null === $this->close_received ) {
				$frame = $this->next_frame( $deadline );
				if ( null === $frame ) {
					break;
				}
				if ( WooBrevo_Ws_Frame::OP_CLOSE === $frame['opcode'] ) {
					$this->close_received = WooBrevo_Ws_Frame::parse_close( $frame['payload'] );
				}
			}
		} catch ( Throwable $e ) { // phpcs:ignore Generic.CodeAnalysis.EmptyStatement.DetectedCatch -- the socket is dropped below either way.
		}
		$this->drop();
	}

	/**
	 * The close frame the server sent, if any.
	 *
	 * @return array{code: int, reason: string}|null
	 */
	public function close_received(): ?array {
		return $this->close_received;
	}

	/**
	 * Seconds from the Retry-After header of the last refused handshake (HTTP 429/503), or null.
	 *
	 * @return int|null
	 */
	public function retry_after(): ?int {
		return $this->retry_after;
	}

	/**
	 * Reads one frame, or null at the deadline.
	 *
	 * @param float $deadline microtime(true) limit.
	 * @return array{fin: bool, opcode: int, payload: string, masked: bool, consumed: int}|null
	 * @throws RuntimeException|UnexpectedValueException On loss or violation.
	 */
	private function next_frame( float $deadline ): ?array {
		while ( true ) {
			try {
				$frame = WooBrevo_Ws_Frame::decode( $this->buffer, false, (int) $this->options['max_message_bytes'] );
			} catch ( UnexpectedValueException $e ) {
				$this->fail( $e->getCode(), $e->getMessage() );
			}
			if ( null !== $frame ) {
				$this->buffer = (string) substr( $this->buffer, $frame['consumed'] );
				return $frame;
			}
			if ( ! $this->read_some( $deadline ) ) {
				return null;
			}
		}
	}

	/**
	 * Handles a close frame from the server: echo it (RFC 6455 §5.5.1), drop, throw.
	 *
	 * @param string $payload Close payload.
	 * @throws RuntimeException Always, with the server's close code.
	 * @return never
	 */
	private function on_close_frame( string $payload ): void {
		try {
			$close = WooBrevo_Ws_Frame::parse_close( $payload );
		} catch ( UnexpectedValueException $e ) {
			$this->fail( $e->getCode(), $e->getMessage() );
		}
		$this->close_received = $close;
		if ( ! $this->close_sent ) {
			try {
				$echo = WooBrevo_Ws_Frame::CLOSE_NO_STATUS === $close['code'] ? '' : pack( 'n', $close['code'] );
				$this->send_frame( WooBrevo_Ws_Frame::OP_CLOSE, $echo );
			} catch ( RuntimeException $e ) { // phpcs:ignore Generic.CodeAnalysis.EmptyStatement.DetectedCatch -- the server may already be gone.
			}
			$this->close_sent = true;
		}
		$this->drop();
		throw new RuntimeException(
			$this->scrub( sprintf( 'the agent closed the connection (%d%s)', $close['code'], '' !== $close['reason'] ? ': ' . $close['reason'] : '' ) ),
			$close['code']
		);
	}

	/**
	 * Sends a close frame for a protocol violation by the server, drops the connection, throws.
	 *
	 * @param int    $code    Close code (1002, 1007, 1009).
	 * @param string $message What was wrong.
	 * @throws UnexpectedValueException Always.
	 * @return never
	 */
	private function fail( int $code, string $message ): void {
		if ( null !== $this->socket && ! $this->close_sent ) {
			try {
				$this->send_frame( WooBrevo_Ws_Frame::OP_CLOSE, WooBrevo_Ws_Frame::close_payload( $code, substr( $message, 0, 100 ) ) );
			} catch ( Throwable $e ) { // phpcs:ignore Generic.CodeAnalysis.EmptyStatement.DetectedCatch -- best effort.
			}
			$this->close_sent = true;
		}
		$this->drop();
		throw new UnexpectedValueException( $this->scrub( $message ), $code );
	}

	/**
	 * Sends a data message, fragmented.
	 *
	 * @param int    $opcode OP_TEXT (the protocol has no binary messages).
	 * @param string $data   Payload.
	 * @throws RuntimeException When closed or lost.
	 */
	private function send_message( int $opcode, string $data ): void {
		$this->require_open();
		$size   = max( 1, (int) $this->options['fragment_size'] );
		$length = strlen( $data );
		if ( $length <= $size ) {
			$this->send_frame( $opcode, $data );
			return;
		}
		for ( $offset = 0; $offset < $length; $offset += $size ) {
			$this->send_frame(
				0 === $offset ? $opcode : WooBrevo_Ws_Frame::OP_CONTINUATION,
				substr( $data, $offset, $size ),
				$offset + $size >= $length
			);
		}
	}

	/**
	 * Sends one frame, masked with a fresh random key (RFC 6455 §5.3: every client frame).
	 *
	 * @param int    $opcode  Opcode.
	 * @param string $payload Payload.
	 * @param bool   $fin     Last fragment.
	 * @throws RuntimeException When the write fails or times out.
	 */
	private function send_frame( int $opcode, string $payload, bool $fin = true ): void {
		if ( null === $this->socket ) {
			throw new RuntimeException( 'websocket is not connected', WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
		}
		$frame = WooBrevo_Ws_Frame::encode( $opcode, $payload, $fin, ( $this->random )( 4 ) );
		$this->write_all( $frame, microtime( true ) + (float) $this->options['read_timeout'], 'sending to the agent' );
	}

	/**
	 * Writes all bytes before a deadline.
	 *
	 * @param string $bytes    Bytes.
	 * @param float  $deadline microtime(true) limit.
	 * @param string $what     For the error message.
	 * @throws RuntimeException When the write fails or times out.
	 */
	private function write_all( string $bytes, float $deadline, string $what ): void {
		$total   = strlen( $bytes );
		$written = 0;
		while ( $written < $total ) {
			$left = $deadline - microtime( true );
			if ( $left <= 0 ) {
				$this->drop();
				throw new RuntimeException( 'timed out ' . $what, WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
			}
			stream_set_timeout( $this->socket, (int) $left, (int) ( fmod( $left, 1.0 ) * 1e6 ) );
			$chunk = 0 === $written ? $bytes : substr( $bytes, $written );
			$n     = @fwrite( $this->socket, $chunk ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged, WordPress.WP.AlternativeFunctions.file_system_operations_fwrite -- a broken pipe is reported below.
			if ( false === $n || ( 0 === $n && ( feof( $this->socket ) || ! empty( stream_get_meta_data( $this->socket )['eof'] ) ) ) ) {
				$this->drop();
				throw new RuntimeException( 'connection lost while ' . $what, WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
			}
			$written += $n;
		}
	}

	/**
	 * Reads what is available into the buffer, waiting until the deadline.
	 *
	 * @param float $deadline microtime(true) limit.
	 * @return bool False at the deadline with nothing read.
	 * @throws RuntimeException When the server went away.
	 */
	private function read_some( float $deadline ): bool {
		$left = $deadline - microtime( true );
		if ( $left <= 0 ) {
			return false;
		}
		// On a blocking socket fread() returns as soon as some bytes arrived (not a full
		// 65536), and for tls:// it also sees bytes already decrypted inside OpenSSL, which a
		// stream_select() on the raw socket would miss.
		stream_set_timeout( $this->socket, (int) $left, (int) ( fmod( $left, 1.0 ) * 1e6 ) );
		$data = @fread( $this->socket, 65536 ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged, WordPress.WP.AlternativeFunctions.file_system_operations_fread -- checked below.
		if ( false !== $data && '' !== $data ) {
			$this->buffer .= $data;
			return true;
		}
		$meta = stream_get_meta_data( $this->socket );
		if ( ! empty( $meta['timed_out'] ) ) {
			return false;
		}
		if ( feof( $this->socket ) || false === $data ) {
			$this->drop();
			throw new RuntimeException( 'the agent went away (connection closed without a close frame)', WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
		}
		return true;
	}

	/**
	 * Throws unless open.
	 *
	 * @throws RuntimeException When not open.
	 */
	private function require_open(): void {
		if ( ! $this->is_open() ) {
			throw new RuntimeException( 'websocket is not open', WooBrevo_Ws_Frame::CLOSE_ABNORMAL );
		}
	}

	/**
	 * Closes the socket, no handshake.
	 */
	private function drop(): void {
		if ( null !== $this->socket ) {
			@fclose( $this->socket ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged, WordPress.WP.AlternativeFunctions.file_system_operations_fclose -- may already be broken.
			$this->socket = null;
		}
	}

	/**
	 * The exception for a refused upgrade.
	 *
	 * @param int                   $status  HTTP status.
	 * @param array<string, string> $headers Lower-cased response headers.
	 * @param string                $shown   URL safe to show.
	 * @return RuntimeException
	 */
	private function status_error( int $status, array $headers, string $shown ): RuntimeException {
		$retry = $headers['retry-after'] ?? '';
		if ( '' !== $retry && ctype_digit( $retry ) ) {
			$this->retry_after = (int) $retry;
		}
		switch ( $status ) {
			case 401:
			case 403:
				$message = sprintf( 'token refused by the agent at %s (HTTP %d): set a valid site token', $shown, $status );
				break;
			case 429:
				$message = sprintf( 'the agent at %s is throttling this site (HTTP 429)%s', $shown, null !== $this->retry_after ? sprintf( '; retry after %d s', $this->retry_after ) : '' );
				break;
			case 404:
				$message = sprintf( 'no websocket endpoint at %s (HTTP 404): check the agent URL (it ends with /v1/stream)', $shown );
				break;
			case 503:
				$message = sprintf( 'the agent at %s is unavailable (HTTP 503)%s', $shown, null !== $this->retry_after ? sprintf( '; retry after %d s', $this->retry_after ) : '' );
				break;
			default:
				$message = sprintf( 'the agent at %s refused the websocket upgrade (HTTP %d)', $shown, $status );
		}
		return new RuntimeException( $this->scrub( $message ), $status );
	}

	/**
	 * Removes the token from a message, whatever produced it.
	 *
	 * @param string $message Message.
	 * @return string
	 */
	private function scrub( string $message ): string {
		return '' === $this->token ? $message : str_replace( $this->token, '[token]', $message );
	}

	/**
	 * Strips CR/LF so a value cannot inject headers.
	 *
	 * @param string $value Header name or value.
	 * @return string
	 */
	private static function header_value( string $value ): string {
		return str_replace( array( "\r", "\n" ), '', $value );
	}

	/**
	 * Splits a ws:// or wss:// URL.
	 *
	 * @param string $url URL.
	 * @return array{tls: bool, host: string, connect_host: string, host_header: string, port: int, path: string, shown: string}
	 * @throws RuntimeException On another scheme or a malformed URL.
	 */
	private static function parse_url( string $url ): array {
		$parts  = parse_url( $url ); // phpcs:ignore WordPress.WP.AlternativeFunctions.parse_url_parse_url -- no WordPress here.
		$scheme = strtolower( (string) ( $parts['scheme'] ?? '' ) );
		if ( false === $parts || ! in_array( $scheme, array( 'ws', 'wss' ), true ) || empty( $parts['host'] ) ) {
			throw new RuntimeException( 'the agent URL must look like wss://host:port/v1/stream (or ws:// on a trusted network)' );
		}
		$tls  = 'wss' === $scheme;
		$host = (string) $parts['host'];
		$bare = trim( $host, '[]' ); // IPv6 literal without brackets, for the certificate check.
		$port = (int) ( $parts['port'] ?? ( $tls ? 443 : 80 ) );
		$path = (string) ( $parts['path'] ?? '/' );
		if ( '' === $path ) {
			$path = '/';
		}
		if ( isset( $parts['query'] ) ) {
			$path .= '?' . $parts['query'];
		}
		$default = $tls ? 443 : 80;
		// The URL as shown in messages: no user:password part.
		$shown = $scheme . '://' . $host . ( isset( $parts['port'] ) ? ':' . $port : '' ) . (string) ( $parts['path'] ?? '' );
		return array(
			'tls'          => $tls,
			'host'         => $bare,
			'connect_host' => str_contains( $bare, ':' ) ? '[' . $bare . ']' : $bare,
			'host_header'  => ( str_contains( $bare, ':' ) ? '[' . $bare . ']' : $bare ) . ( $port !== $default ? ':' . $port : '' ),
			'port'         => $port,
			'path'         => $path,
			'shown'        => $shown,
		);
	}
}
