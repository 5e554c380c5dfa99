"""Politeness per host across every fetching process: at most `per_host` requests in flight
to one host, and at least `delay` seconds between the starts of two requests to it, over
all the threads of a shard and all the shards running at once (mapped Airflow tasks, CLI
workers), on one machine or many.

Why PostgreSQL advisory locks (not Redis tokens): the news database is always there and
Redis is optional; a session lock dies with its session, so a worker that crashes or is
killed gives its slots back at once (the server ends the session), with no expiry to tune
and no token left to leak; and a lock is taken or refused in one round trip, without a
table to write. A host's slots are `per_host` lock keys derived from (host, slot index)
by a stable hash; its turn (the delay) is one more key, held from a request's start until
`delay` later (a timer thread here gives it back). Each process holds its locks on one
session (autocommit, no open transaction) and never waits inside the database: it tries
(`pg_try_advisory_lock`) and, refused, tries again after a bounded backoff, so every wait
is the caller's to bound. Locks are per database: every worker of one news database shares
them; a server reached through a transaction-pooling proxy (PgBouncer) would not keep them.

Fairness between processes: a process refused a slot or the turn registers as waiting for
the host (a shared lock on the host's waiting key, held until it gets one); a process that
has already had a turn there yields, before it takes another, while any other is
registered. So a worker that frees a slot does not take it straight back while another
starves: when both want the host, they take turns.

Without a database (`db_url` None, or it fails mid-run: a warning, then this) the same
limits hold within the process only. Does no HTTP; which feed goes next is the caller's.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

import psycopg2

log = logging.getLogger(__name__)

# Trying again after other workers held the host: from FIRST_BACKOFF, doubling, at most
# MAX_BACKOFF (seconds; jittered so pollers do not try in step).
FIRST_BACKOFF = 0.005
MAX_BACKOFF = 0.05
# A slot given back is unlocked in the database within this many seconds, in one round
# trip with the others given back meanwhile.
UNLOCK_BATCH = 0.005


def host_of(url: str) -> str:
    """The politeness key of a URL: host and port (or scheme). A port that is no port
    (`:99999`, `:abc`) keys by the scheme: the fetch then fails for that feed alone."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname}:{port or parts.scheme}"


@lru_cache(maxsize=8192, typed=True)  # a request asks for the keys of every slot of its host, twice
def lock_key(host: str, *what: object) -> int:
    """A stable signed 64-bit advisory lock key for (host, what): the same in every process."""
    text = "\x1f".join(map(str, ("news-pipeline host politeness", host, *what)))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True)
class Lease:
    """One request's slot at a host, taken now: give it back when the request ends."""

    host: str
    index: int


@dataclass(frozen=True)
class Busy:
    """No slot at the host now. Try again at `retry_at` (monotonic seconds), or when this
    process gives a slot back (None). `remote`: other workers hold it (or its turn)."""

    retry_at: float | None
    remote: bool


@dataclass
class _Host:
    held: set[int] = field(default_factory=set)  # slot indexes this process holds
    turn_until: float = 0.0  # this process holds the host's turn until then
    retry_at: float = 0.0  # after other workers held it: not before then
    backoff: float = 0.0
    waiting: bool = False  # registered in the database as waiting for this host
    served: bool = False  # had a turn: yields to registered waiters before the next


class _Locks:
    """Session-level advisory locks on one autocommit connection (callers serialize)."""

    def __init__(self, db_url: str):
        self.conn = psycopg2.connect(db_url, application_name="news-pipeline host slots")
        self.conn.autocommit = True
        self.cur = self.conn.cursor()

    def _ask(self, statement: str, key: int) -> bool:
        self.cur.execute(statement, (key,))
        return bool(self.cur.fetchone()[0])

    def try_lock(self, key: int) -> bool:
        return self._ask("SELECT pg_try_advisory_lock(%s)", key)

    def try_lock_all(self, keys: list[int]) -> list[bool]:
        """`try_lock` for each key, in one round trip (each tried exactly once)."""
        self.cur.execute("SELECT n, pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)",
                         (keys,))
        return [ok for _, ok in sorted(self.cur.fetchall())]

    def unlock_all(self, keys: list[int]) -> None:
        self.cur.execute("SELECT count(*) FILTER (WHERE pg_advisory_unlock(k)) FROM unnest(%s::bigint[]) AS k",
                         (keys,))
        self.cur.fetchone()

    def try_lock_shared(self, key: int) -> bool:
        return self._ask("SELECT pg_try_advisory_lock_shared(%s)", key)

    def unlock_shared(self, key: int) -> None:
        self._ask("SELECT pg_advisory_unlock_shared(%s)", key)

    def claim(self, waiting_key: int | None, keys: list[int]) -> tuple[bool, int | None]:
        """In one round trip: whether another session waits for the host (checked only
        with a `waiting_key`: another session holds it shared, so taking it exclusive fails;
        this session's own shared hold does not conflict), and if none does, the position
        of the first of `keys` locked now, tried in order, each at most once, up to the
        first taken."""
        self.cur.execute(_CLAIM, {"wk": waiting_key, "keys": keys})
        others, position = self.cur.fetchone()
        return bool(others), None if position is None else position - 1

    def close(self) -> None:
        self.conn.close()  # the server releases every lock the session still holds


# `_Locks.claim`: the waiting check, then the keys tried one after another (a recursive
# step runs only while none was taken), so no lock is taken beyond the first granted.
_CLAIM = """
WITH RECURSIVE
w AS (SELECT CASE WHEN %(wk)s::bigint IS NULL THEN false
                  WHEN pg_try_advisory_lock(%(wk)s::bigint) THEN NOT pg_advisory_unlock(%(wk)s::bigint)
                  ELSE true END AS others),
t(n, ok) AS (
    SELECT 1, pg_try_advisory_lock((%(keys)s::bigint[])[1]) FROM w
    WHERE NOT w.others AND cardinality(%(keys)s::bigint[]) > 0
    UNION ALL
    SELECT n + 1, pg_try_advisory_lock((%(keys)s::bigint[])[n + 1]) FROM t
    WHERE NOT t.ok AND n < cardinality(%(keys)s::bigint[]))
SELECT (SELECT others FROM w), (SELECT n FROM t WHERE ok)
"""


class HostSlots:
    """`try_take(host)` a slot now (or be told when to try again), `started(lease)` when its
    request goes out, `give_back(lease)` after it. Thread-safe; `close()` when done.

    Unlocks are deferred to a thread of their own: a slot given back is unlocked within
    `UNLOCK_BATCH` seconds, with the others given back meanwhile, in one round trip (or
    taken again by this process before that, with none); a turn is unlocked when its delay
    is over. So a fetch costs one round trip to the database, not two."""

    def __init__(self, per_host: int, delay: float = 0.0, db_url: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.per_host, self.delay, self.clock = per_host, delay, clock
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # a slot or a turn came back
        self._due: list[tuple[float, int]] = []  # (when, key) to unlock; stale when rescheduled
        self._unlock_at: dict[int, float] = {}  # keys this session holds that no lease does
        self._releaser: threading.Thread | None = None
        self._closing = False
        self._db: _Locks | None = None
        if db_url:
            try:
                self._db = _Locks(db_url)
            except psycopg2.Error as exc:
                log.warning("host slots: no database (%s); per-host limits hold in this process only",
                            str(exc).strip())

    @property
    def shared(self) -> bool:
        """Whether the limits hold across processes (the database is in use)."""
        return self._db is not None

    def try_take(self, host: str) -> Lease | Busy:
        """A slot at `host` now, with its turn, or when to try again. Never waits."""
        with self._lock:
            return self._try_take(host)

    def try_take_many(self, hosts: Sequence[str]) -> list[Lease | Busy]:
        """`try_take` for each of `hosts` (distinct), asking the database once for every
        host this process has not taken yet (when there is no delay to keep)."""
        with self._lock:
            now = self.clock()
            fresh = [n for n, host in enumerate(hosts) if self._fresh(host, now)]
            if self._db is None or self.delay > 0 or len(fresh) < 2:
                return [self._try_take(host) for host in hosts]
            try:
                locked = self._db.try_lock_all([lock_key(hosts[n], 0) for n in fresh])
            except psycopg2.Error as exc:
                self._lose_database(exc)
                return [self._try_take(host) for host in hosts]
            taken = {n for n, ok in zip(fresh, locked, strict=True) if ok}
            for n in taken:
                state = self._hosts[hosts[n]]
                state.held.add(0)
                state.served = True
            return [Lease(host, 0) if n in taken else self._try_take(host) for n, host in enumerate(hosts)]

    def _fresh(self, host: str, now: float) -> bool:
        """Whether this process never had (nor waited for) a slot at `host`: its slot 0
        is free here, with no unlock pending, and no waiter can have a claim on it."""
        state = self._hosts.setdefault(host, _Host())
        return not (state.served or state.waiting or state.held) and now >= state.retry_at

    def _try_take(self, host: str) -> Lease | Busy:
        state = self._hosts.setdefault(host, _Host())
        now = self.clock()
        free = [i for i in range(self.per_host) if i not in state.held]
        if not free:
            return Busy(None, remote=False)
        if now < state.turn_until:
            return Busy(state.turn_until, remote=False)
        if now < state.retry_at:
            return Busy(state.retry_at, remote=True)
        index = self._claim(host, state, free)
        if index is None:
            state.backoff = min(max(state.backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
            state.retry_at = now + state.backoff * random.uniform(0.5, 1.0)
            return Busy(state.retry_at, remote=True)
        state.held.add(index)
        state.backoff, state.served = 0.0, True
        if self.delay > 0:
            state.turn_until = now + self.delay
        return Lease(host, index)

    def _claim(self, host: str, state: _Host, free: list[int]) -> int | None:
        """A free slot index with the host's turn, taken in the database when shared."""
        if self._db is None:
            return free[0]
        try:
            # a slot whose unlock is still pending here is this session's already: no round
            # trip for it; else the free slots are tried in the database, in one round trip
            # with the check for waiters (one that had its turn yields to them, without
            # waiting in line itself)
            held_here = next((i for i in free if lock_key(host, i) in self._unlock_at), None)
            check = lock_key(host, "waiting") if state.served and not state.waiting else None
            others, position = False, None
            if held_here is None:
                others, position = self._db.claim(check, [lock_key(host, i) for i in free])
            elif check is not None:
                others, _ = self._db.claim(check, [])
            if others:
                return None
            if held_here is not None:
                del self._unlock_at[lock_key(host, held_here)]
                index: int | None = held_here
            else:
                index = None if position is None else free[position]
            if index is not None and self.delay > 0:
                if self._relock(lock_key(host, "turn")):
                    self._schedule(lock_key(host, "turn"), self.clock() + self.delay)
                else:
                    self._schedule(lock_key(host, index), self.clock())
                    index = None
            if index is None:
                self._wait_for(host, state)
            elif state.waiting:
                self._db.unlock_shared(lock_key(host, "waiting"))
                state.waiting = False
            return index
        except psycopg2.Error as exc:
            self._lose_database(exc)
            return free[0]

    def _relock(self, key: int) -> bool:
        """Take `key`: still held by this session (its unlock not done yet), or locked now."""
        assert self._db is not None
        if self._unlock_at.pop(key, None) is not None:
            return True
        return self._db.try_lock(key)

    def _wait_for(self, host: str, state: _Host) -> None:
        """Register this process as waiting for `host` (other workers then yield to it)."""
        if not state.waiting and self._db is not None:
            state.waiting = self._db.try_lock_shared(lock_key(host, "waiting"))

    def take(self, host: str, until: float) -> Lease | None:
        """A slot at `host`, waiting for one until `until` (monotonic); None if none came."""
        with self._freed:
            while True:
                got = self._try_take(host)
                if isinstance(got, Lease):
                    return got
                now = self.clock()
                if now >= until:
                    return None
                wake = min(got.retry_at if got.retry_at is not None else until, until)
                self._freed.wait(max(wake - now, 0.0))

    def started(self, lease: Lease) -> None:
        """The request under `lease` goes out now: the next start at its host waits `delay`
        from now (not from when the slot was taken)."""
        if self.delay <= 0:
            return
        with self._lock:
            when = self.clock() + self.delay
            state = self._hosts[lease.host]
            state.turn_until = max(state.turn_until, when)
            if lock_key(lease.host, "turn") in self._unlock_at:
                self._schedule(lock_key(lease.host, "turn"), when)

    def give_back(self, lease: Lease) -> None:
        with self._freed:
            self._hosts[lease.host].held.discard(lease.index)
            if self._db is not None:
                self._schedule(lock_key(lease.host, lease.index), self.clock() + UNLOCK_BATCH)
            self._freed.notify_all()

    def stop_waiting(self, host: str) -> None:
        """This process wants no more turns at `host`: leave its waiting list."""
        with self._lock:
            state = self._hosts.get(host)
            if state is not None and state.waiting and self._db is not None:
                state.waiting = False
                try:
                    self._db.unlock_shared(lock_key(host, "waiting"))
                except psycopg2.Error as exc:
                    self._lose_database(exc)

    def _schedule(self, key: int, when: float) -> None:
        """Unlock `key` (held by this session, by no lease) at `when`, no earlier, on the
        releaser thread (under the lock). A later time replaces an earlier one."""
        self._unlock_at[key] = max(when, self._unlock_at.get(key, when))
        heapq.heappush(self._due, (self._unlock_at[key], key))
        if self._releaser is None:
            self._releaser = threading.Thread(target=self._release, name="host-slots", daemon=True)
            self._releaser.start()
        self._freed.notify_all()

    def _release(self) -> None:
        with self._freed:
            while self._due or not self._closing:
                now, ready = self.clock(), []
                while self._due and self._due[0][0] <= now:
                    when, key = heapq.heappop(self._due)
                    if self._unlock_at.get(key) == when:  # else taken again, or rescheduled
                        del self._unlock_at[key]
                        ready.append(key)
                if ready and self._db is not None:
                    try:
                        self._db.unlock_all(ready)
                    except psycopg2.Error as exc:
                        self._lose_database(exc)
                    self._freed.notify_all()
                elif not ready:
                    self._freed.wait(self._due[0][0] - now if self._due else None)

    def _lose_database(self, exc: psycopg2.Error) -> None:
        """The session failed (its locks are gone with it): go on with in-process limits."""
        log.warning("host slots: database session lost (%s); per-host limits hold in this process only",
                    str(exc).strip())
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except psycopg2.Error:
                pass
        self._due.clear()
        self._unlock_at.clear()

    def close(self) -> None:
        """Give back every slot and turn when it is due (the delay holds after the last
        request), then end the session, which releases whatever is still held."""
        with self._freed:
            self._closing = True
            self._freed.notify_all()
        if self._releaser is not None:
            self._releaser.join()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
