<?php
/**
 * The exporter's messages (WooBrevo_Protocol): `export` out, `export_result` in, kept well formed
 * whatever the agent sends (WooBrevo_Ws_Client::export() is tested against the agent: PrivacyTest).
 *
 * @package WooBrevo
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

/**
 * @covers WooBrevo_Protocol
 */
final class PrivacyProtocolTest extends TestCase {

	public function test_export_message(): void {
		$this->assertSame(
			array(
				'type'    => 'export',
				'request' => 'r-1',
				'email'   => 'zoë@example.com',
			),
			json_decode( WooBrevo_Protocol::export( 'r-1', 'zoë@example.com' ), true )
		);
	}

	public function test_export_result_keeps_strings_and_drops_what_cannot_be_named(): void {
		$parsed = WooBrevo_Protocol::parse(
			(string) json_encode(
				array(
					'type'    => 'export_result',
					'request' => 'r-1',
					'groups'  => array(
						array(
							'id'    => 'woobrevo-agent-consent',
							'label' => 'Consent',
							'items' => array(
								array(
									'id'   => 'consent',
									'data' => array(
										array(
											'name'  => 'Subscribed',
											'value' => true,
										),
										array(
											'name'  => 'Since',
											'value' => 1765000000.5,
										),
										array( 'value' => 'no name: dropped' ),
										'not a pair',
									),
								),
								array( 'data' => array() ),
							),
						),
						array( 'label' => 'no id: dropped' ),
						array(
							'id'    => 'woobrevo-agent-empty',
							'items' => 'nonsense',
						),
						'not a group',
					),
				)
			)
		);
		$this->assertSame(
			array(
				'type'    => 'export_result',
				'request' => 'r-1',
				'groups'  => array(
					array(
						'id'    => 'woobrevo-agent-consent',
						'label' => 'Consent',
						'items' => array(
							array(
								'id'   => 'consent',
								'data' => array(
									array(
										'name'  => 'Subscribed',
										'value' => '1',
									),
									array(
										'name'  => 'Since',
										'value' => '1765000000.5',
									),
								),
							),
						),
					),
					array(
						'id'    => 'woobrevo-agent-empty',
						'label' => 'woobrevo-agent-empty',
						'items' => array(),
					),
				),
			),
			$parsed
		);
		$this->assertSame( array(), WooBrevo_Protocol::parse( '{"type":"export_result"}' )['groups'] );
	}
}
