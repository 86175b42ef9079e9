/**
 * WooBrevo: sends the classic checkout's billing e-mail to the site once the shopper stops
 * typing, so that a guest's cart can be recovered (POST /wp-json/woobrevo/v1/cart-email, with a nonce).
 */
( function () {
	'use strict';
	var settings = window.woobrevoCartEmail;
	var field = document.getElementById( 'billing_email' );
	if ( ! settings || ! field || ! window.fetch ) {
		return;
	}
	var timer = null;
	var sent = '';
	function send() {
		var email = field.value.trim();
		if ( email === sent || ! /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test( email ) ) {
			return;
		}
		sent = email;
		var body = new URLSearchParams();
		body.append( 'nonce', settings.nonce );
		body.append( 'email', email );
		window.fetch( settings.url, { method: 'POST', credentials: 'same-origin', body: body } );
	}
	function later() {
		window.clearTimeout( timer );
		timer = window.setTimeout( send, 800 );
	}
	field.addEventListener( 'input', later );
	field.addEventListener( 'change', send );
	if ( field.value ) {
		later();
	}
}() );
