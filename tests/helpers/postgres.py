"""PostgreSQL for tests: a fresh database per test, and a TCP proxy to simulate an outage.

The server is the one ``scripts/services.sh`` starts (``eval "$(bash scripts/services.sh)"``
exports ``MALWARESNIPPER_TEST_POSTGRES_DSN``, a role with CREATEDB). Without it the tests that
need PostgreSQL skip with a reason. Each test gets its own ``ms_test_<random>`` database, dropped
afterwards, so tests never see each other's rows and may run in parallel.

An outage is simulated with :class:`TcpProxy` between a store and the server, never by stopping
the shared server (other tests use it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

ADMIN_DSN_ENV = "MALWARESNIPPER_TEST_POSTGRES_DSN"
SKIP_REASON = "PostgreSQL not configured: set MALWARESNIPPER_TEST_POSTGRES_DSN (scripts/services.sh does)"


def admin_dsn() -> str:
    """The DSN of a role that may create databases; skips the test when none is configured."""
    dsn = os.environ.get(ADMIN_DSN_ENV, "")
    if not dsn:
        pytest.skip(SKIP_REASON)
    pytest.importorskip("psycopg", reason="psycopg is needed: pip install -e '.[test]'")
    return dsn


async def create_database() -> tuple[str, str]:
    """Create ``ms_test_<random>``; returns (name, DSN)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    admin = admin_dsn()
    name = "ms_test_" + secrets.token_hex(6)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        for attempt in range(20):
            try:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                break
            except psycopg.errors.ObjectInUse:
                # "template1 is being accessed by other users": another test (or pytest run) is
                # creating its database at the same moment. Wait and retry.
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1 + 0.05 * attempt)
    return name, make_conninfo(admin, dbname=name)


async def drop_database(name: str) -> None:
    """Drop a database :func:`create_database` made, terminating leftover sessions."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(admin_dsn(), autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A fresh, empty database for the block: yields its DSN, drops it after."""
    name, dsn = await create_database()
    try:
        yield dsn
    finally:
        await drop_database(name)


@contextlib.contextmanager
def fresh_database_sync() -> Iterator[str]:
    """:func:`fresh_database` for synchronous tests. Playwright's sync API keeps an event loop
    running in the test's thread, so the database work runs on a loop in a thread of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        name, dsn = thread.submit(asyncio.run, create_database()).result()
        try:
            yield dsn
        finally:
            thread.submit(asyncio.run, drop_database(name)).result()


class TcpProxy:
    """A loopback TCP forwarder to the PostgreSQL server that a test can stop and start again.

    ``stop()`` closes the listening socket and cuts every forwarded connection (as if the server
    went away); ``start()`` listens again on the same port.
    """

    def __init__(self, target_dsn: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(target_dsn)
        self.target_host = str(params.get("host") or "127.0.0.1")
        self.target_port = int(params.get("port") or 5432)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def dsn(self, dsn: str) -> str:
        """``dsn`` rerouted through this proxy."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(dsn, host="127.0.0.1", port=str(self.port))

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)
