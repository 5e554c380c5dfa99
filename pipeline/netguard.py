"""The guarded dialler: which addresses the fetcher may connect to, and a deadline on
every socket operation of a fetch.

SSRF guard. Only globally routable addresses are allowed: an address that Python's
`ipaddress` does not call global (private, loopback, link-local with the cloud
metadata at 169.254.169.254, CGNAT, documentation, reserved, unspecified), a
multicast one, and the ranges listed in `ALSO_NOT_GLOBAL` are refused. An IPv6
address that embeds an IPv4 one (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4,
Teredo) is refused when the IPv4 address is, so `64:ff9b::7f00:1` is loopback.
`FETCH_ALLOWED_NETWORKS` (CIDRs) opens ranges, e.g. 127.0.0.0/8 for tests and the
demo: an address is let through when it or the IPv4 address it embeds lies in one.
The check runs inside the HTTP client's connect step, after DNS resolution and on
the resolved address actually dialled, so every connection is checked when it is
opened (a redirect to another origin opens one; a request that reuses a pooled
connection goes to the address checked when it was opened) and a DNS answer cannot
change between check and connect.

Deadline. Inside `with deadline(at):` every step of the backend (DNS resolution,
connect, TLS handshake, each read and write) gets min(its own timeout, time left),
and none starts after `at`: a server that drips bytes, or a resolver that never
answers, cannot hold a fetch past it. DNS runs in a daemon thread that is abandoned
at the timeout (`getaddrinfo` itself has none); the thread ends with the system
resolver's own timeout.

This module decides nothing about HTTP: redirects, status codes and the body are
the fetch module's.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[..., list]

# Not globally reachable, yet `is_global` is true for them on some Pythons (the lists
# changed in 3.11.10 / 3.12.4): checked as well, so the verdict does not depend on the
# interpreter. The IANA special-purpose registries are the source.
ALSO_NOT_GLOBAL: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(net) for net in (
    "192.0.0.0/24",    # IETF protocol assignments (RFC 6890)
    "64:ff9b:1::/48",  # NAT64, local use (RFC 8215)
    "2002::/16",       # 6to4 (RFC 3056, deprecated): Python 3.12.4+ calls it not global
    "3fff::/20",       # documentation (RFC 9637)
    "5f00::/16",       # SRv6 SIDs (RFC 9602)
    "fec0::/10",       # site-local (deprecated by RFC 3879)
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")


class BlockedAddress(OSError):
    """The host resolved only to addresses the policy refuses."""


class ResolutionFailed(OSError):
    """DNS gave no address for the host."""


class LookupsBusy(ResolutionFailed):
    """No lookup could start: `MAX_PENDING_LOOKUPS` abandoned ones (a resolver that does not
    answer for other hosts) hold every place. This process's state, not the host's."""


class DeadlineExceeded(httpcore.TimeoutException):
    """The fetch's deadline passed during `step` (dns, connect, tls, write or read)."""

    def __init__(self, step: str):
        super().__init__(f"deadline passed during {step}")
        self.step = step


def parse_networks(text: str | None) -> tuple[IPNetwork, ...]:
    if not text:
        return ()
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _rfc6052(address: ipaddress.IPv6Address, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address in an RFC 6052 address of this prefix length (bits 64-71 skipped)."""
    if prefix == 96:
        return _low32(address)
    value = int(address)
    without_u = (value >> 64) << 56 | (value & ((1 << 56) - 1))  # 120 bits
    return ipaddress.IPv4Address((without_u >> (120 - prefix - 32)) & 0xFFFFFFFF)


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (none for most)."""
    if isinstance(address, ipaddress.IPv4Address):
        return ()
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in _SIIT or address in _COMPATIBLE or address in _NAT64:
        return (_low32(address),)
    if address in _NAT64_LOCAL:  # the operator picks the prefix length: try each
        return tuple(dict.fromkeys(_rfc6052(address, n) for n in (48, 56, 64, 96)))
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo  # (server, client)
    return ()


def is_public(address: IPAddress) -> bool:
    """Globally routable, unicast, and in none of `ALSO_NOT_GLOBAL`."""
    return (address.is_global and not address.is_multicast
            and not any(address in net for net in ALSO_NOT_GLOBAL))


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why the address may not be dialled, or None when it may."""
        views = (address, *embedded_ipv4(address))
        if any(view in net for view in views for net in self.allowed_networks):
            return None
        for view in views:
            if not is_public(view):
                return "not global" if view is address else f"embeds {view}, not global"
        return None

    def allows(self, address: IPAddress) -> bool:
        return self.refusal(address) is None


_DEADLINE: ContextVar[float | None] = ContextVar("fetch_deadline", default=None)


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Bound every network step of the guarded backend in this thread by `at` (monotonic)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _budget(step: str, timeout: float | None) -> tuple[float | None, bool]:
    """The timeout for one step: min(timeout, time left); and whether the deadline is what binds."""
    at = _DEADLINE.get()
    if at is None:
        return timeout, False
    left = at - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(step)
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


@contextmanager
def _step(step: str, clamped: bool) -> Iterator[None]:
    """A timeout of a step whose time the deadline set is the deadline passing."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        if clamped and not isinstance(exc, DeadlineExceeded):
            raise DeadlineExceeded(step) from exc
        raise


# Lookups abandoned at a deadline run on until the system resolver gives up: at most this
# many at once in a process, so a resolver that never answers cannot pile up threads.
MAX_PENDING_LOOKUPS = 64
_LOOKUPS = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


def resolve(host: str, port: int, timeout: float | None = None,
            lookup: Lookup = socket.getaddrinfo) -> list[IPAddress]:
    """The host's addresses, in the resolver's order. Raises `ResolutionFailed`, or
    `httpcore.ConnectTimeout` when no answer came within `timeout` (the lookup is abandoned)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    answer: list[Any] = []
    done = threading.Event()
    if not _LOOKUPS.acquire(timeout=timeout if timeout is not None else -1):
        raise LookupsBusy(f"no DNS lookup could start for {host}: {MAX_PENDING_LOOKUPS} pending "
                          "(the resolver is not answering for other hosts)")

    def ask() -> None:
        try:
            answer.append(lookup(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            answer.append(exc)
        finally:
            _LOOKUPS.release()
            done.set()

    threading.Thread(target=ask, name=f"resolve-{host}", daemon=True).start()
    if not done.wait(timeout):
        raise httpcore.ConnectTimeout(f"no DNS answer for {host} within {timeout:.3g} s")
    if isinstance(answer[0], socket.gaierror):
        raise ResolutionFailed(f"cannot resolve {host}: {answer[0]}") from answer[0]
    if isinstance(answer[0], BaseException):
        raise answer[0]
    seen: list[IPAddress] = []
    for info in answer[0]:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes end by the deadline of the fetch using it
    (read at each call: a pooled connection serves fetches with different deadlines)."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget, clamped = _budget("read", timeout)
        with _step("read", clamped):
            return self._stream.read(max_bytes, budget)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        budget, clamped = _budget("write", timeout)
        with _step("write", clamped):
            self._stream.write(buffer, budget)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        budget, clamped = _budget("tls", timeout)
        with _step("tls", clamped):
            return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, dialling only addresses the policy allows, by the deadline."""

    def __init__(self, policy: AddressPolicy, lookup: Lookup = socket.getaddrinfo):
        self.policy = policy
        self.lookup = lookup

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        budget, clamped = _budget("dns", timeout)
        with _step("dns", clamped):
            addresses = resolve(host, port, budget, self.lookup)
        allowed = [a for a in addresses if self.policy.allows(a)]
        if not allowed:
            listed = ", ".join(f"{a} ({self.policy.refusal(a)})" for a in addresses)
            raise BlockedAddress(f"{host} resolves to {listed}: not an allowed address "
                                 "(private, loopback, link-local or reserved; see FETCH_ALLOWED_NETWORKS)")
        budget, clamped = _budget("connect", timeout)
        with _step("connect", clamped):
            stream = super().connect_tcp(str(allowed[0]), port, budget, local_address,
                                         socket_options)
        return _DeadlineStream(stream)
