<?php
/**
 * What the plugin's in-WordPress benchmarks share: turning every WooBrevo callback off and on
 * again (the "off" and "on" modes), and the summary of a list of times.
 *
 * @package WooBrevo
 */

/**
 * Removes every WooBrevo callback from every hook; returns them for woobrevo_bench_restore().
 *
 * @return array<int, array{0: string, 1: callable, 2: int, 3: int}>
 */
function woobrevo_bench_unhook(): array {
	global $wp_filter;
	$removed = array();
	foreach ( $wp_filter as $hook => $filter ) {
		foreach ( $filter->callbacks as $priority => $callbacks ) {
			foreach ( $callbacks as $callback ) {
				$fn    = $callback['function'];
				$owner = is_array( $fn ) ? ( is_object( $fn[0] ) ? get_class( $fn[0] ) : (string) $fn[0] ) : '';
				if ( 0 === strpos( $owner, 'WooBrevo_' ) ) {
					$removed[] = array( $hook, $fn, $priority, $callback['accepted_args'] );
				}
			}
		}
	}
	foreach ( $removed as $r ) {
		remove_filter( $r[0], $r[1], $r[2] );
	}
	return $removed;
}

/**
 * Puts the callbacks back.
 *
 * @param array<int, array{0: string, 1: callable, 2: int, 3: int}> $removed From woobrevo_bench_unhook().
 */
function woobrevo_bench_restore( array $removed ): void {
	foreach ( $removed as $r ) {
		add_filter( $r[0], $r[1], $r[2], $r[3] );
	}
}

/**
 * Median, 95th percentile and mean of a list of milliseconds.
 *
 * @param float[] $ms     Times.
 * @param int     $digits Decimals kept.
 * @return array{median: float, p95: float, mean: float}
 */
function woobrevo_bench_stats( array $ms, int $digits = 4 ): array {
	sort( $ms );
	return array(
		'median' => round( $ms[ intdiv( count( $ms ), 2 ) ], $digits ),
		'p95'    => round( $ms[ (int) floor( count( $ms ) * 0.95 ) ], $digits ),
		'mean'   => round( array_sum( $ms ) / count( $ms ), $digits ),
	);
}
