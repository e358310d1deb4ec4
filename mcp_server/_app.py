"""`App`: what the server's lifespan yields, and how it is bound to the one session.

A server serves exactly one session, given one of two ways:

* a `Session` that someone else runs (`joyvl serve`: the session is already running, the
  server only wraps it and never stops it);
* a `SessionProvider`, an async context manager factory that yields a running session and
  closes it on exit; `run_session(session)` is the usual one (`joyvl mcp` over stdio: the
  server's lifespan starts and runs the session).

The lifespan runs once per process under stdio and streamable HTTP, and once per client with
the in-memory `Client(server)`; `App` counts its users, so concurrent lifespans share one
session, one notifier and one legacy-subscriber table.

The notifier is a task subscribed to the session's `EventBus`: each event becomes
`ResourceUpdated` cues on the SDK's subscription bus (2026-07-28 `subscriptions/listen`
streams) and `notifications/resources/updated` to the connections that sent
`resources/subscribe` for that URI (protocol versions up to 2025-11-25).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeAlias

import anyio
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from joyvl_agent._supervisor import TaskSupervisor
from joyvl_agent.config import Config
from joyvl_agent.events import BaseEvent, Subscription, parse_event
from joyvl_agent.memory import Store
from joyvl_agent.session import Session

from ._uris import updated_uris
from .log import log

__all__ = ["App", "LegacySubscribers", "RateLimit", "SessionProvider", "run_session"]

SessionProvider: TypeAlias = Callable[[], AbstractAsyncContextManager[Session]]
"""Yields a running session for as long as the server is up, and ends it afterwards."""

LEGACY_SEND_TIMEOUT_S = 5.0


def run_session(session: Session, *, task: str | None = None) -> SessionProvider:
    """A provider that starts `session` (and sets `task`), runs it in the background while
    the server is up, then stops and closes it. For `joyvl mcp` over stdio."""

    @contextlib.asynccontextmanager
    async def provider() -> AsyncIterator[Session]:
        await session.start()
        if task:
            await session.set_task(task)
        supervisor = TaskSupervisor(f"mcp-{session.session_id}")
        supervisor.spawn(_run(session), "run")
        try:
            yield session
        finally:
            with anyio.CancelScope(shield=True):
                await session.close()  # ends run() too; keeps the end reason it has
                await supervisor.aclose()

    return provider


async def _run(session: Session) -> None:
    try:
        await session.run()
    except Exception:  # keep serving what was recorded; session_status reports the state
        log.exception("session %s stopped with an error", session.session_id)


class RateLimit:
    """At most `calls` per `per_s` seconds of `now()` (a sliding window)."""

    def __init__(self, calls: int, per_s: float, now: Callable[[], float]) -> None:
        if calls < 1 or per_s <= 0:
            raise ValueError("a rate limit needs calls >= 1 and per_s > 0")
        self.calls = calls
        self.per_s = per_s
        self._now = now
        self._times: deque[float] = deque()

    def take(self) -> float:
        """Record a call and return 0, or return how many seconds to wait (nothing recorded)."""
        now = self._now()
        while self._times and now - self._times[0] >= self.per_s:
            self._times.popleft()
        if len(self._times) >= self.calls:
            return self._times[0] + self.per_s - now
        self._times.append(now)
        return 0.0


def connection_key(session: Any) -> object:
    """A stable identity for the client connection behind a per-request `ServerSession`.

    The SDK builds a new `ServerSession` for every request and exposes no public handle on
    the connection yet, so this reads its private `_connection` (falling back to the session
    object itself), in the same spirit as the documented `_lowlevel_server` workaround.
    """
    return getattr(session, "_connection", None) or session


class LegacySubscribers:
    """URI -> the connections that sent `resources/subscribe` for it (and a session to send
    through). A connection's entries go when it closes or a send to it fails."""

    def __init__(self) -> None:
        self._by_uri: dict[str, dict[object, Any]] = {}
        self._watched: set[int] = set()

    def add(self, uri: str, session: Any) -> None:
        key = connection_key(session)
        self._by_uri.setdefault(uri, {})[key] = session
        conn = getattr(session, "_connection", None)
        stack = getattr(conn, "exit_stack", None)
        if stack is not None and id(conn) not in self._watched:
            self._watched.add(id(conn))
            stack.callback(self._forget, key, id(conn))

    def remove(self, uri: str, session: Any) -> bool:
        subs = self._by_uri.get(uri)
        if not subs or subs.pop(connection_key(session), None) is None:
            return False
        if not subs:
            del self._by_uri[uri]
        return True

    def targets(self, uri: str) -> list[tuple[object, Any]]:
        return list(self._by_uri.get(uri, {}).items())

    def drop(self, key: object) -> None:
        for uri in list(self._by_uri):
            subs = self._by_uri[uri]
            subs.pop(key, None)
            if not subs:
                del self._by_uri[uri]

    def _forget(self, key: object, conn_id: int) -> None:
        self._watched.discard(conn_id)
        self.drop(key)

    def clear(self) -> None:
        self._by_uri.clear()
        self._watched.clear()

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_uri.values())


class App:
    """The lifespan state of a joyvl MCP server: the one session it serves, and what the MCP
    side keeps about it (the speak rate limit, legacy subscribers, the notifier).

    Args:
        source: The `Session` to wrap (run by someone else), or a `SessionProvider`.
        config: Settings (tokens, host check).
        bus: The server's subscription bus (`MCPServer(subscriptions=bus)`).
        speak_limit: `(calls, per_s)` for the `speak` tool.
    """

    def __init__(self, source: Session | SessionProvider, config: Config, *,
                 bus: SubscriptionBus, speak_limit: tuple[int, float] = (5, 10.0)) -> None:
        self.config = config
        self.bus = bus
        self.legacy = LegacySubscribers()
        self.speak_limit = speak_limit
        self._source = source
        self._session: Session | None = source if isinstance(source, Session) else None
        self._users = 0
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._supervisor: TaskSupervisor | None = None
        self._limiter: RateLimit | None = None

    # -- binding ------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the MCP server is not running (its lifespan has not started)")
        return self._session

    @property
    def store(self) -> Store:
        store = self.session._store
        assert store is not None, "a started session has a store"
        return store

    @property
    def speak_limiter(self) -> RateLimit:
        if self._limiter is None:
            calls, per_s = self.speak_limit
            self._limiter = RateLimit(calls, per_s, self.session.clock.now)
        return self._limiter

    @contextlib.asynccontextmanager
    async def attached(self) -> AsyncIterator[App]:
        """Bind to the session for one lifespan (the first starts it, the last lets go)."""
        async with self._lock:
            self._users += 1
            if self._users == 1:
                try:
                    await self._open()
                except BaseException:
                    self._users -= 1
                    raise
        try:
            yield self
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        await self._close()

    async def _open(self) -> None:
        stack = AsyncExitStack()
        try:
            if isinstance(self._source, Session):
                await self._source.start()  # no-op when already started; never stopped here
                session = self._source
            else:
                session = await stack.enter_async_context(self._source())
            self._session = session
            self._limiter = None
            supervisor = TaskSupervisor(f"mcp-notify-{session.session_id}")
            sub = session.bus.subscribe(maxsize=10_000)
            supervisor.spawn(self._notify(sub), "notifier")
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._supervisor = stack, supervisor

    async def _close(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.aclose()
            self._supervisor = None
        self.legacy.clear()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        if not isinstance(self._source, Session):
            self._session = None

    # -- notifications ------------------------------------------------------------------

    async def _notify(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                await self.publish(event)
        finally:
            sub.close()

    async def publish(self, event: BaseEvent) -> None:
        """Send the update cues for one event to both subscription eras."""
        for uri in updated_uris(event):
            await self.publish_uri(uri)

    async def publish_uri(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for key, session in self.legacy.targets(uri):
            try:
                with anyio.fail_after(LEGACY_SEND_TIMEOUT_S):
                    await session.send_resource_updated(uri)
            except Exception as exc:  # a closed or stuck connection
                log.info("dropping a legacy subscriber of %s: %s", uri, exc)
                self.legacy.drop(key)

    # -- reads --------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking store work on a thread (the session clock stands still meanwhile)."""
        async with self.session.clock.hold():
            return await asyncio.to_thread(fn, *args)

    async def latest_events(self, kinds: Sequence[str] | None, limit: int) -> list[BaseEvent]:
        """The newest `limit` events (of `kinds`), oldest first."""
        session = self.session
        store = self.store
        if kinds is None:
            after = max(0, session.bus.last_seq - limit)
            return await self.in_thread(
                lambda: store.events(session.session_id, after_seq=after, limit=limit))

        def newest() -> list[BaseEvent]:
            marks = ",".join("?" * len(kinds))
            with store.connection("reading the newest events") as conn:
                rows = conn.execute(
                    f"SELECT body FROM events WHERE session_id = ? AND kind IN ({marks})"
                    " ORDER BY seq DESC LIMIT ?", [session.session_id, *kinds, limit]).fetchall()
            return [parse_event(body) for (body,) in reversed(rows)]

        return await self.in_thread(newest)
