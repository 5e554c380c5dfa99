"""The SSRF guard's verdicts on every address form, and the dialler's deadline on DNS."""

import ipaddress
import socket
import threading
import time

import httpcore
import pytest

from pipeline import netguard
from pipeline.netguard import (
    AddressPolicy,
    BlockedAddress,
    DeadlineExceeded,
    GuardedBackend,
    deadline,
    embedded_ipv4,
    parse_networks,
)


def ip(text):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "192.0.0.170", "198.18.0.1", "240.0.0.1", "224.0.0.1", "233.1.1.1",
    "::", "::1", "fd00:ec2::254", "fe80::1", "ff02::1", "ff0e::1", "2001:db8::1", "3fff::1",
    "fec0::1",                                  # site-local
    "::ffff:127.0.0.1", "::ffff:a9fe:a9fe",     # IPv4-mapped
    "::ffff:0:7f00:1", "::ffff:0:a00:1",        # SIIT
    "::7f00:1", "::a9fe:a9fe",                  # IPv4-compatible
    "64:ff9b::7f00:1", "64:ff9b::a00:1",        # NAT64, well-known prefix
    "64:ff9b:1::7f00:1", "64:ff9b:1::808:808",  # NAT64, local-use prefix
    "2002:7f00:1::1", "2002:a9fe:a9fe::",       # 6to4
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",     # Teredo
])
def test_non_global_addresses_and_those_embedding_one_are_refused(address):
    assert not AddressPolicy().allows(ip(address))


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",     # IPv4-mapped form of a public address
    "64:ff9b::808:808",   # what DNS64 answers for 8.8.8.8 on an IPv6-only network
])
def test_global_addresses_pass(address):
    assert AddressPolicy().allows(ip(address))


@pytest.mark.parametrize(("address", "inside"), [
    ("::ffff:127.0.0.1", "127.0.0.1"), ("::ffff:0:7f00:1", "127.0.0.1"), ("::7f00:1", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"), ("2002:a00:1::", "10.0.0.1"),
    ("64:ff9b:1:7f00:0:100::", "127.0.0.1"),  # RFC 6052, /48 prefix: split around bits 64-71
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # Teredo client, de-obfuscated
])
def test_the_embedded_ipv4_address_is_decoded_and_named_in_the_refusal(address, inside):
    assert ip(inside) in embedded_ipv4(ip(address))
    assert AddressPolicy().refusal(ip(address)) in ("not global", f"embeds {inside}, not global")


def test_allowed_networks_open_exactly_the_named_ranges():
    policy = AddressPolicy(parse_networks("127.0.0.0/8, 10.0.0.0/8, fd00::/8"))
    for address in ("127.0.0.1", "10.9.9.9", "fd00::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"):
        assert policy.allows(ip(address)), address
    for address in ("192.168.1.1", "169.254.169.254", "::1", "fe80::1", "64:ff9b::a9fe:a9fe"):
        assert not policy.allows(ip(address)), address


@pytest.fixture
def hung_lookup():
    """A resolver that never answers (until the test ends), like getaddrinfo with DNS down."""
    release = threading.Event()

    def lookup(host, port, **kwargs):
        release.wait(10)
        raise socket.gaierror("gave up")

    yield lookup
    release.set()


def test_a_resolver_that_never_answers_is_abandoned_at_the_deadline(hung_lookup):
    backend = GuardedBackend(AddressPolicy(), lookup=hung_lookup)
    started = time.monotonic()
    with deadline(started + 0.3), pytest.raises(DeadlineExceeded) as raised:
        backend.connect_tcp("feeds.example", 80, timeout=5.0)
    assert raised.value.step == "dns"
    assert time.monotonic() - started < 0.6


def test_without_a_deadline_the_connect_timeout_bounds_dns(hung_lookup):
    backend = GuardedBackend(AddressPolicy(), lookup=hung_lookup)
    started = time.monotonic()
    with pytest.raises(httpcore.ConnectTimeout, match="no DNS answer for feeds.example"):
        backend.connect_tcp("feeds.example", 80, timeout=0.3)
    assert time.monotonic() - started < 0.6


def test_refused_answers_are_skipped_and_an_allowed_one_is_dialled():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def lookup(host, port, **kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                    for address in ("10.0.0.1", "127.0.0.1")]

        backend = GuardedBackend(AddressPolicy(parse_networks("127.0.0.0/8")), lookup=lookup)
        stream = backend.connect_tcp("feeds.example", port, timeout=2.0)
        try:
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        finally:
            stream.close()


def test_a_host_resolving_only_to_refused_addresses_is_blocked_with_the_reason():
    def lookup(host, port, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::7f00:1", port, 0, 0))]

    with pytest.raises(BlockedAddress, match=r"64:ff9b::7f00:1 \(embeds 127.0.0.1, not global\)"):
        GuardedBackend(AddressPolicy(), lookup=lookup).connect_tcp("feeds.example", 80, timeout=2.0)


def test_lookups_a_silent_resolver_holds_are_bounded_and_a_full_queue_is_no_timeout_of_the_host():
    """Lookups abandoned at their timeout run on in their threads: at most
    MAX_PENDING_LOOKUPS at once. Past that a lookup fails at once as `LookupsBusy`, a `dns`
    failure of this process, which does not count as the host not answering (its cut-off)."""
    from pipeline import fetch

    gate = threading.Event()

    def silent(host, port, type):  # noqa: A002 - getaddrinfo's keyword
        gate.wait(10)
        raise socket.gaierror("gave up")

    try:
        for i in range(netguard.MAX_PENDING_LOOKUPS):
            with pytest.raises(httpcore.ConnectTimeout):
                netguard.resolve(f"dead{i}.example", 80, 0.01, silent)
        started = time.monotonic()
        with pytest.raises(netguard.LookupsBusy, match=f"{netguard.MAX_PENDING_LOOKUPS} pending") as busy:
            netguard.resolve("healthy.example", 80, 0.05, silent)
        assert time.monotonic() - started < 1
    finally:
        gate.set()
    failure = fetch._classify(busy.value)
    assert failure.kind == "dns" and not failure.unanswered


def test_a_dns_failure_between_timeouts_neither_counts_nor_resets_a_hosts_count():
    """The host cut-off (`pipeline.fetch._Turns`) counts timeouts before the host answered;
    a `dns` failure between them (no address; no lookup could start in this process) says
    nothing of the host's server: the count goes on, and the host is cut at the cut-off."""
    from datetime import datetime, timezone

    from pipeline import fetch
    from pipeline.host_slots import HostSlots
    from pipeline.records import FeedState, FetchOutcome, FetchResult

    feeds = [FeedState(i, f"http://tarpit.example/{i}.xml") for i in range(5)]
    turns = fetch._Turns(feeds, HostSlots(per_host=1), turn_wait=1.0, cutoff=2)

    def ended(feed, **fields):
        turns.fetched(feed, FetchResult(feed.id, feed.url, FetchOutcome.ERROR, datetime.now(timezone.utc), 1,
                                        **fields))

    ended(feeds[0], error_kind="timeout", unanswered=True)
    ended(feeds[1], error_kind="dns")  # e.g. LookupsBusy
    assert not turns._cut
    ended(feeds[2], error_kind="timeout", unanswered=True)
    assert sorted(t.feed.id for t in turns._cut) == [0, 1, 2, 3, 4]  # every feed still pending
