<?php
/**
 * Helpers for the websocket client tests: Python servers as child processes, certificates.
 *
 * @package WooBrevo
 */

declare(strict_types=1);

final class WsTestSupport {

	/**
	 * The Python that has the project's dependencies: WOOBREVO_PYTHON, the repository's .venv, or python3.
	 */
	public static function python(): string {
		$env = getenv( 'WOOBREVO_PYTHON' );
		if ( is_string( $env ) && '' !== $env ) {
			return $env;
		}
		$venv = dirname( __DIR__, 3 ) . '/.venv/bin/python';
		return is_executable( $venv ) ? $venv : 'python3';
	}

	/**
	 * A new empty temporary directory.
	 */
	public static function temp_dir(): string {
		$dir = sys_get_temp_dir() . '/woobrevo-ws-' . bin2hex( random_bytes( 6 ) );
		mkdir( $dir, 0700 );
		return $dir;
	}

	/**
	 * Removes a directory made by temp_dir().
	 */
	public static function remove_dir( string $dir ): void {
		foreach ( (array) glob( "$dir/*" ) as $file ) {
			@unlink( (string) $file );
		}
		@rmdir( $dir );
	}

	/**
	 * Writes a self-signed certificate for 127.0.0.1 and localhost with openssl.
	 */
	public static function self_signed_cert( string $dir, string $cert, string $key ): void {
		$cmd = sprintf(
			'openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=127.0.0.1 -addext %s -keyout %s -out %s 2>&1',
			escapeshellarg( 'subjectAltName=IP:127.0.0.1,DNS:localhost' ),
			escapeshellarg( "$dir/$key" ),
			escapeshellarg( "$dir/$cert" )
		);
		exec( $cmd, $output, $status );
		if ( 0 !== $status ) {
			throw new RuntimeException( "openssl failed:\n" . implode( "\n", $output ) );
		}
	}

	/**
	 * Starts a Python script that prints one JSON line (its ports) and runs until stdin closes.
	 *
	 * @param string   $script Path.
	 * @param string[] $args   Arguments.
	 * @return array{process: resource, stdin: resource, ports: array<string, int>}
	 */
	public static function start_python( string $script, array $args = array(), float $timeout = 20.0 ): array {
		$cmd     = array_merge( array( self::python(), $script ), $args );
		$process = proc_open( $cmd, array( 0 => array( 'pipe', 'r' ), 1 => array( 'pipe', 'w' ), 2 => STDERR ), $pipes );
		if ( ! is_resource( $process ) ) {
			throw new RuntimeException( 'cannot start ' . $script );
		}
		stream_set_timeout( $pipes[1], (int) $timeout );
		$line = fgets( $pipes[1] );
		$ports = is_string( $line ) ? json_decode( $line, true ) : null;
		if ( ! is_array( $ports ) ) {
			proc_terminate( $process );
			throw new RuntimeException( "$script did not start (is websockets installed for " . self::python() . '?)' );
		}
		return array(
			'process' => $process,
			'stdin'   => $pipes[0],
			'stdout'  => $pipes[1],
			'ports'   => $ports,
		);
	}

	/**
	 * Stops a process started by start_python().
	 *
	 * @param array<string, mixed> $server What start_python() returned.
	 */
	public static function stop( array $server ): void {
		@fclose( $server['stdin'] );
		$deadline = microtime( true ) + 5;
		while ( proc_get_status( $server['process'] )['running'] && microtime( true ) < $deadline ) {
			usleep( 20000 );
		}
		if ( proc_get_status( $server['process'] )['running'] ) {
			proc_terminate( $server['process'] );
		}
		proc_close( $server['process'] );
	}

	/**
	 * A TCP port on 127.0.0.1 that nothing listens on (bound, read back, released).
	 */
	public static function free_port(): int {
		$socket = stream_socket_server( 'tcp://127.0.0.1:0' );
		$name   = stream_socket_get_name( $socket, false );
		fclose( $socket );
		return (int) substr( (string) $name, strrpos( (string) $name, ':' ) + 1 );
	}

	/**
	 * Starts the real agent (`python -m agent.cli run`) with a generated config; waits for its stream port.
	 *
	 * @param string               $dir       Temp dir for the config, state and log.
	 * @param array<string, mixed> $agent     Extra keys under `agent` (stream limits, tls…).
	 * @param array<int, array{id: string, token: string}> $sites Sites and their tokens.
	 * @param array<string, mixed> $extra     Other top-level config keys, merged in.
	 * @param array<string, string> $env      Extra environment variables (e.g. the agent's WOOBREVO_TEST_* faults, agent/cli/main.py).
	 * @return array{process: resource, port: int, http_port: int, log: string, dir: string}
	 */
	public static function start_agent( string $dir, array $agent = array(), array $sites = array(), array $extra = array(), array $env = array() ): array {
		$port      = self::free_port();
		$http_port = self::free_port();
		$entries   = array();
		foreach ( $sites as $site ) {
			$entries[] = array(
				'id'           => $site['id'],
				'token_sha256' => hash( 'sha256', $site['token'] ),
			) + ( $site['config'] ?? array() );
		}
		$config = array_replace_recursive(
			array(
				'agent'      => array_replace_recursive(
					array(
						'listen'    => array(
							'stream' => "127.0.0.1:$port",
							'http'   => "127.0.0.1:$http_port",
						),
						'state_dir' => "$dir/state",
						'log_level' => 'info',
					),
					$agent
				),
				'brevo'      => array( 'dry_run' => true ),
				'connectors' => array( 'woocommerce' => array( 'store_url' => 'http://woobrevo.test' ) ),
				'sites'      => $entries,
			),
			$extra
		);
		// JSON is YAML: the agent's loader reads it as is.
		file_put_contents( "$dir/agent.yaml", json_encode( $config, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES ) );
		$log     = "$dir/agent.log";
		$cmd     = array( self::python(), '-m', 'agent.cli', 'run', '--config', "$dir/agent.yaml" );
		$process = proc_open( $cmd, array( 0 => array( 'file', '/dev/null', 'r' ), 1 => array( 'file', $log, 'a' ), 2 => array( 'file', $log, 'a' ) ), $pipes, dirname( __DIR__, 3 ), array() === $env ? null : array_merge( getenv(), $env ) );
		if ( ! is_resource( $process ) ) {
			throw new RuntimeException( 'cannot start the agent' );
		}
		$deadline = microtime( true ) + 30;
		while ( true ) {
			$socket = @stream_socket_client( "tcp://127.0.0.1:$port", $errno, $errstr, 0.2 );
			if ( false !== $socket ) {
				fclose( $socket );
				break;
			}
			if ( ! proc_get_status( $process )['running'] || microtime( true ) > $deadline ) {
				proc_terminate( $process, 9 );
				throw new RuntimeException( "the agent did not start:\n" . (string) @file_get_contents( $log ) );
			}
			usleep( 50000 );
		}
		return array(
			'process'   => $process,
			'port'      => $port,
			'http_port' => $http_port,
			'log'       => $log,
			'dir'       => $dir,
		);
	}

	/**
	 * Stops the agent: SIGTERM (graceful), SIGKILL after 10 s; or SIGKILL at once.
	 *
	 * @param array<string, mixed> $agent What start_agent() returned.
	 */
	public static function stop_agent( array $agent, bool $kill = false ): void {
		if ( ! is_resource( $agent['process'] ) ) {
			return;
		}
		proc_terminate( $agent['process'], $kill ? 9 : 15 );
		$deadline = microtime( true ) + 10;
		while ( proc_get_status( $agent['process'] )['running'] && microtime( true ) < $deadline ) {
			usleep( 20000 );
		}
		if ( proc_get_status( $agent['process'] )['running'] ) {
			proc_terminate( $agent['process'], 9 );
		}
		proc_close( $agent['process'] );
	}

	/**
	 * The agent's /status document (docs/doors.md).
	 *
	 * @param array<string, mixed> $agent What start_agent() returned.
	 * @return array<string, mixed>
	 */
	public static function agent_status( array $agent ): array {
		$status = json_decode( (string) @file_get_contents( sprintf( 'http://127.0.0.1:%d/status', $agent['http_port'] ) ), true );
		if ( ! is_array( $status ) ) {
			throw new RuntimeException( "no /status from the agent:\n" . (string) @file_get_contents( $agent['log'] ) );
		}
		return $status;
	}

	/**
	 * The events a site's stream stored in the agent's inbox, oldest first, read from its SQLite
	 * file (PHP here has no SQLite driver: the project's Python reads it).
	 *
	 * @param array<string, mixed> $agent What start_agent() returned.
	 * @return array<int, array{event_id: string, topic: string, payload: mixed}>
	 */
	public static function agent_inbox( array $agent, string $site = 'default' ): array {
		$config = json_decode( (string) file_get_contents( $agent['dir'] . '/agent.yaml' ), true );
		$script = 'import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); '
			. 'print(json.dumps([{"event_id": e, "topic": t, "payload": json.loads(p)} for e, t, p in '
			. 'db.execute("SELECT event_id, topic, payload FROM inbox WHERE site = ? ORDER BY seq", (sys.argv[2],))]))';
		$cmd    = array( self::python(), '-c', $script, $config['agent']['state_dir'] . '/woobrevo.sqlite3', $site );
		$proc   = proc_open( $cmd, array( 1 => array( 'pipe', 'w' ), 2 => array( 'pipe', 'w' ) ), $pipes );
		$out    = stream_get_contents( $pipes[1] );
		$err    = stream_get_contents( $pipes[2] );
		if ( 0 !== proc_close( $proc ) || ! is_array( $rows = json_decode( (string) $out, true ) ) ) {
			throw new RuntimeException( "cannot read the agent's inbox: $err" );
		}
		return $rows;
	}

	/**
	 * A hello message as the shipper sends it.
	 */
	public static function hello( int $blog_id = 1 ): string {
		return json_encode(
			array(
				'type'           => 'hello',
				'protocol'       => 1,
				'site_url'       => 'http://woobrevo.test/',
				'blog_id'        => $blog_id,
				'plugin_version' => '0.1.0',
				'wp_version'     => '6.1.9',
				'wc_version'     => '9.0.0',
			)
		);
	}

	/**
	 * An events message of deleted customers (the smallest valid payload), each padded to $pad bytes.
	 *
	 * @return array{0: string, 1: string[]} The message and its event ids.
	 */
	public static function events( string $batch, string $prefix, int $count, int $pad = 0 ): array {
		$events = array();
		$ids    = array();
		for ( $i = 1; $i <= $count; $i++ ) {
			$ids[]    = "$prefix-$i";
			$payload  = array( 'id' => $i );
			if ( $pad > 0 ) {
				$payload['note'] = str_repeat( 'p', $pad );
			}
			$events[] = array(
				'id'          => "$prefix-$i",
				'topic'       => 'customer.deleted',
				'resource'    => 'customer',
				'resource_id' => $i,
				'occurred_at' => gmdate( 'Y-m-d\TH:i:s\Z' ),
				'payload'     => $payload,
			);
		}
		return array(
			json_encode(
				array(
					'type'   => 'events',
					'batch'  => $batch,
					'events' => $events,
				)
			),
			$ids,
		);
	}
}
