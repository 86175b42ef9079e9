<?php
/**
 * WooBrevo_Options is the one registry of option names: no other plugin file spells a
 * `'woobrevo_…'` option or transient name, and no option function is called with a literal.
 * (That uninstall removes every registered option is checked inside WordPress: UninstallTest
 * on a single site, NetworkTest on a network.)
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

defined( 'ABSPATH' ) || define( 'ABSPATH', sys_get_temp_dir() . '/woobrevo-no-wordpress/' ); // As tests/php/bootstrap.php does for pure classes.
require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-woobrevo-options.php';

/**
 * @covers WooBrevo_Options
 */
final class OptionsRegistryTest extends TestCase {

	/** Functions whose first argument names an option or a transient. */
	private const OPTION_FUNCTIONS = array(
		'get_option',
		'add_option',
		'update_option',
		'delete_option',
		'get_site_option',
		'add_site_option',
		'update_site_option',
		'delete_site_option',
		'get_network_option',
		'update_network_option',
		'delete_network_option',
		'get_transient',
		'set_transient',
		'delete_transient',
		'get_site_transient',
		'set_site_transient',
		'delete_site_transient',
	);

	/**
	 * Every registered name: the options uninstall deletes, the transients, the notice prefix.
	 *
	 * @return string[]
	 */
	private static function registered(): array {
		return array_merge( WooBrevo_Options::ALL, WooBrevo_Options::TRANSIENTS, array( WooBrevo_Options::NOTICE_TRANSIENT_PREFIX ) );
	}

	/**
	 * The plugin's PHP files other than the registry.
	 *
	 * @return array<string, string> Relative path => source.
	 */
	private static function plugin_sources(): array {
		$root    = dirname( __DIR__, 3 ) . '/wp-plugin';
		$sources = array();
		foreach ( array_merge( glob( $root . '/*.php' ), glob( $root . '/includes/*.php' ) ) as $file ) {
			if ( 'class-woobrevo-options.php' !== basename( $file ) ) {
				$sources[ substr( $file, strlen( $root ) + 1 ) ] = (string) file_get_contents( $file );
			}
		}
		return $sources;
	}

	/**
	 * Option names spelled as literals in a PHP source: a string equal to a registered name, or
	 * a `woobrevo_` string given to an option or transient function.
	 *
	 * @param string $source PHP source.
	 * @return string[] "line N: 'name'" findings.
	 */
	private static function literals( string $source ): array {
		$findings = array();
		$state    = 0; // 1: an option function's name was just read; 2: and its "(".
		foreach ( token_get_all( $source ) as $token ) {
			if ( is_array( $token ) && in_array( $token[0], array( T_WHITESPACE, T_COMMENT ), true ) ) {
				continue;
			}
			$previous = $state;
			$state    = 0;
			if ( ! is_array( $token ) ) {
				$state = ( '(' === $token && 1 === $previous ) ? 2 : 0;
				continue;
			}
			list( $id, $text, $line ) = $token;
			if ( T_STRING === $id && in_array( strtolower( $text ), self::OPTION_FUNCTIONS, true ) ) {
				$state = 1;
			} elseif ( T_CONSTANT_ENCAPSED_STRING === $id ) {
				$value  = stripcslashes( substr( $text, 1, -1 ) );
				$passed = 2 === $previous && str_starts_with( $value, 'woobrevo_' );
				if ( $passed || in_array( $value, self::registered(), true ) ) {
					$findings[] = "line $line: $text";
				}
			}
		}
		return $findings;
	}

	public function test_no_option_name_is_spelled_outside_the_registry(): void {
		$found = array();
		foreach ( self::plugin_sources() as $path => $source ) {
			foreach ( self::literals( $source ) as $finding ) {
				$found[] = "$path $finding";
			}
		}
		$this->assertSame( array(), $found, 'name these options by a WooBrevo_Options constant' );
	}

	public function test_the_check_finds_literals(): void {
		$source = "<?php\nget_option( 'woobrevo_agent_url' );\nupdate_option( 'woobrevo_new_thing', 1 );\n"
			. "\$x = array( 'woobrevo_last_error' );\nset_transient( 'woobrevo_other', 1 );\n"
			. "get_option( WooBrevo_Options::TOKEN );\ndo_action( 'woobrevo_ship' );\n";
		$this->assertSame(
			array( "line 2: 'woobrevo_agent_url'", "line 3: 'woobrevo_new_thing'", "line 4: 'woobrevo_last_error'", "line 5: 'woobrevo_other'" ),
			self::literals( $source )
		);
	}

	public function test_every_constant_is_registered_once(): void {
		$constants = ( new ReflectionClass( WooBrevo_Options::class ) )->getConstants();
		$lists     = array( 'ALL', 'TRANSIENTS', 'CONNECTION' );
		$names     = array_diff_key( $constants, array_flip( $lists ) );
		unset( $names['NOTICE_TRANSIENT_PREFIX'] );
		$this->assertEqualsCanonicalizing( array_values( $names ), array_merge( WooBrevo_Options::ALL, WooBrevo_Options::TRANSIENTS ) );
		$this->assertSame( array_values( array_unique( WooBrevo_Options::ALL ) ), WooBrevo_Options::ALL );
		$this->assertSame( array(), array_diff( WooBrevo_Options::CONNECTION, WooBrevo_Options::ALL ) );
		foreach ( self::registered() as $name ) {
			$this->assertMatchesRegularExpression( '/^woobrevo_[a-z_]+$/', $name );
		}
	}
}
