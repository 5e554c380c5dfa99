"""SSRF guard: which addresses the fetcher may connect to, checked at connect time.

By default only globally routable addresses are allowed: private, loopback,
link-local (which includes cloud metadata at 169.254.169.254), CGNAT,
multicast, reserved and unspecified ones are refused. `FETCH_ALLOWED_NETWORKS`
(CIDRs) opens specific ranges, e.g. 127.0.0.0/8 for tests and the demo.

The check runs inside the HTTP client's connect step, after DNS resolution and
on the resolved address actually dialled, so every redirect hop is checked and
a DNS answer cannot change between check and connect.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Iterable

import httpcore

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(OSError):
    """The host resolved only to addresses the policy refuses."""


class ResolutionFailed(OSError):
    """DNS gave no address for the host."""


def parse_networks(text: str | None) -> tuple[IPNetwork, ...]:
    if not text:
        return ()
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionFailed(f"cannot resolve {host}: {exc}") from exc
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, dialling only addresses the policy allows."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        allowed = [a for a in addresses if self.policy.allows(a)]
        if not allowed:
            listed = ", ".join(map(str, addresses))
            raise BlockedAddress(f"{host} resolves to {listed}: not an allowed address "
                                 "(private, loopback, link-local or reserved; see FETCH_ALLOWED_NETWORKS)")
        return super().connect_tcp(str(allowed[0]), port, timeout, local_address, socket_options)
