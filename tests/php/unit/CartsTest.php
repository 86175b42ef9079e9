<?php
/**
 * The pure parts of cart capture: the restore token, the cart hash, the snapshot, the welcome's
 * `carts` field.
 *
 * @package WooBrevo\Tests
 */

use PHPUnit\Framework\TestCase;

/**
 * @covers WooBrevo_Carts
 * @covers WooBrevo_Protocol
 */
final class CartsTest extends TestCase {

	private const SECRET = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
	private const NOW    = 1796551200; // 2026-12-06T10:00:00Z.

	public function test_token_round_trip(): void {
		$token = WooBrevo_Carts::sign( 123, self::NOW + 3600, self::SECRET );
		$this->assertMatchesRegularExpression( '/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/', $token );
		$this->assertSame( 123, WooBrevo_Carts::verify( $token, self::SECRET, self::NOW ) );
		$this->assertSame( 123, WooBrevo_Carts::verify( $token, self::SECRET, self::NOW + 3600 ), 'valid up to its expiry' );
	}

	public function test_expired_token_is_refused(): void {
		$token = WooBrevo_Carts::sign( 123, self::NOW - 1, self::SECRET );
		$this->assertNull( WooBrevo_Carts::verify( $token, self::SECRET, self::NOW ) );
	}

	public function test_forged_and_altered_tokens_are_refused(): void {
		$token = WooBrevo_Carts::sign( 123, self::NOW + 3600, self::SECRET );
		list( $data, $mac ) = explode( '.', $token );
		$other_cart = WooBrevo_Carts::sign( 124, self::NOW + 3600, self::SECRET );
		$later      = WooBrevo_Carts::sign( 123, self::NOW + 99999, self::SECRET );
		$cases      = array(
			'another secret'            => WooBrevo_Carts::sign( 123, self::NOW + 3600, str_repeat( 'f', 64 ) ),
			'another cart, same mac'    => explode( '.', $other_cart )[0] . '.' . $mac,
			'a later expiry, same mac'  => explode( '.', $later )[0] . '.' . $mac,
			'one mac character changed' => $data . '.' . ( 'A' === $mac[0] ? 'B' : 'A' ) . substr( $mac, 1 ),
			'no mac'                    => $data,
			'empty'                     => '',
			'garbage'                   => 'not-a-token',
			'padding'                   => $data . '.' . $mac . '=',
		);
		foreach ( $cases as $name => $bad ) {
			$this->assertNull( WooBrevo_Carts::verify( $bad, self::SECRET, self::NOW ), $name );
		}
		$this->assertNull( WooBrevo_Carts::verify( $token, '', self::NOW ), 'no secret, no cart' );
	}

	public function test_signed_data_must_name_one_cart(): void {
		$mac = static fn( string $data ): string => rtrim( strtr( base64_encode( hash_hmac( 'sha256', $data, self::SECRET, true ) ), '+/', '-_' ), '=' );
		$b64 = static fn( string $data ): string => rtrim( strtr( base64_encode( $data ), '+/', '-_' ), '=' );
		foreach ( array( '0.' . ( self::NOW + 60 ), '12', 'x.' . ( self::NOW + 60 ), '-1.' . ( self::NOW + 60 ) ) as $data ) {
			$this->assertNull( WooBrevo_Carts::verify( $b64( $data ) . '.' . $mac( $data ), self::SECRET, self::NOW ), $data );
		}
	}

	public function test_hash_follows_cart_email_and_coupons(): void {
		$base = WooBrevo_Carts::hash( 'abc', 'a@example.com', array( 'SAVE10', 'FREESHIP' ) );
		$this->assertMatchesRegularExpression( '/^[0-9a-f]{32}$/', $base );
		$this->assertSame( $base, WooBrevo_Carts::hash( 'abc', ' A@Example.com ', array( 'FREESHIP', 'SAVE10' ) ), 'case, spaces and coupon order do not count' );
		$this->assertNotSame( $base, WooBrevo_Carts::hash( 'abd', 'a@example.com', array( 'SAVE10', 'FREESHIP' ) ) );
		$this->assertNotSame( $base, WooBrevo_Carts::hash( 'abc', 'b@example.com', array( 'SAVE10', 'FREESHIP' ) ) );
		$this->assertNotSame( $base, WooBrevo_Carts::hash( 'abc', 'a@example.com', array( 'SAVE10' ) ) );
	}

	public function test_snapshot_shape(): void {
		$snapshot = WooBrevo_Carts::snapshot(
			array(
				'id'          => 123,
				'token'       => str_repeat( '9f', 16 ),
				'email'       => 'a@example.com',
				'customer_id' => 5,
			),
			array(
				array(
					'product_id'   => '11',
					'variation_id' => 0,
					'name'         => 'Cap',
					'quantity'     => '2',
					'price'        => '10',
					'image'        => 'https://shop.example/cap.jpg',
					'url'          => 'https://shop.example/product/cap/',
				),
			),
			array(
				'subtotal' => 20,
				'discount' => '0',
				'shipping' => 0.0,
				'tax'      => '2',
				'total'    => '22.004',
			),
			array(
				'currency'    => 'EUR',
				'decimals'    => 2,
				'locale'      => 'fr_FR',
				'restore_url' => 'https://shop.example/?woobrevo_restore=x.y',
				'now'         => self::NOW,
			),
			array( 'SAVE10' )
		);
		$this->assertSame(
			array(
				'id'                => 123,
				'token'             => str_repeat( '9f', 16 ),
				'email'             => 'a@example.com',
				'customer_id'       => 5,
				'items'             => array(
					array(
						'product_id'   => 11,
						'variation_id' => 0,
						'name'         => 'Cap',
						'quantity'     => 2,
						'price'        => '10.00',
						'image'        => 'https://shop.example/cap.jpg',
						'url'          => 'https://shop.example/product/cap/',
					),
				),
				'totals'            => array(
					'subtotal' => '20.00',
					'discount' => '0.00',
					'shipping' => '0.00',
					'tax'      => '2.00',
					'total'    => '22.00',
				),
				'currency'          => 'EUR',
				'coupons'           => array( 'SAVE10' ),
				'restore_url'       => 'https://shop.example/?woobrevo_restore=x.y',
				'locale'            => 'fr_FR',
				'date_modified_gmt' => '2026-12-06T10:00:00',
			),
			$snapshot
		);
	}

	public function test_money_uses_the_store_decimals(): void {
		$this->assertSame( '1235', WooBrevo_Carts::money( '1234.5', 0 ) );
		$this->assertSame( '0.500', WooBrevo_Carts::money( 0.5, 3 ) );
		$this->assertSame( '0.00', WooBrevo_Carts::money( 'n/a', 2 ) );
	}

	public function test_welcome_carts_field(): void {
		$this->assertSame( array( 'enabled' => true, 'link_lifetime' => 604800 ), WooBrevo_Protocol::parse( '{"type":"welcome"}' )['carts'], 'an older agent: capture, 7 days' );
		$this->assertSame( array( 'enabled' => false, 'link_lifetime' => 86400 ), WooBrevo_Protocol::parse( '{"type":"welcome","carts":{"enabled":false,"link_lifetime":86400}}' )['carts'] );
		$this->assertSame( array( 'enabled' => true, 'link_lifetime' => 60 ), WooBrevo_Protocol::parse( '{"type":"welcome","carts":{"link_lifetime":5}}' )['carts'] );
		$this->assertSame( array( 'enabled' => true, 'link_lifetime' => 604800 ), WooBrevo_Protocol::parse( '{"type":"welcome","carts":"yes"}' )['carts'] );
	}
}
