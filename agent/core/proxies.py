"""Which address a request came from, when the agent sits behind reverse proxies.

Behind a proxy every connection comes from the proxy's own address: the stream door's
handshake throttle (docs/protocol.md) would count every site's refused handshakes as one
address's, and one site with a stale token would get every site refused with 429. The operator
names the proxies it trusts (`agent.trusted_proxies`); for a request from one of them, the
client is the right-most `X-Forwarded-For` address that is not a trusted proxy itself (each
proxy appends the address it saw: the hops to the right of the client are all trusted ones).
The header is never believed from anyone else: a client could write any address there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["Network", "client_address", "parse_network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str) -> Network:
    """`10.0.0.5`, `10.0.0.0/8`, `::1` or `fd00::/8` → a network; ValueError says what is wrong."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"expected an IP address or network such as 127.0.0.1, 10.0.0.0/8 or ::1; got {value!r}"
        ) from None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """One X-Forwarded-For hop: an address, `[v6]`, `[v6]:port` or `v4:port`; None if not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port (a bare IPv6 address has two colons or more)
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in nets)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The address to throttle and log: `peer` itself, unless `peer` is a trusted proxy; then
    the right-most `X-Forwarded-For` hop (over every such header, in order) that is not one.
    A hop that is not an address stops the walk at the last good one: a proxy that wrote it
    is misconfigured, and what lies left of it cannot be trusted."""
    addr = _ip(peer)
    if addr is None or not trusted or not _trusted(addr, trusted):
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            break
        addr = ip
        if not _trusted(ip, trusted):
            break
    return str(addr)
