"""Built-in checks of datastores: a SQLAlchemy database and Redis.

Both connect on their own, with driver timeouts set and retries off, so a probe never takes a
connection from the app's pool and its thread ends soon after the deadline even when the
server hangs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import _optional
from .checks import CheckFailed, HealthCheck, Observation, Status

__all__ = ["DatabaseCheck", "RedisCheck"]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class DatabaseCheck(HealthCheck):
    """``SELECT 1`` over a connection of its own (SQLAlchemy, ``NullPool``).

    Give ``engine`` (the app's engine: its URL is reused, and its pool's use is reported as
    ``<name>:connections``, warning when every connection is checked out — no connection is
    ever taken from it) or ``url``. The probe's engine has a connect timeout and, on
    PostgreSQL, a statement timeout; it opens one connection per run and closes it.

    :param engine: the app's ``sqlalchemy.Engine`` (e.g. Flask-SQLAlchemy's ``db.engine``).
    :param url: a database URL, when there is no engine to reuse.
    :param query: the statement that must succeed.
    """

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("sqlalchemy", "sqlalchemy"),)

    engine: Any = field(default=None, repr=False)
    url: Any = field(default=None, repr=False)
    query: str = "SELECT 1"

    component_type = "datastore"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.engine is None and self.url is None:
            raise ValueError(f"DatabaseCheck {self.name!r}: give engine= or url=")
        self._own: Any = None
        self._lock = threading.Lock()

    def _probe_engine(self) -> Any:
        with self._lock:
            if self._own is None:
                sqlalchemy = _optional.require("sqlalchemy", "sqlalchemy", "DatabaseCheck")
                from sqlalchemy.pool import NullPool

                url = sqlalchemy.make_url(self.url if self.url is not None else self.engine.url)
                self._own = sqlalchemy.create_engine(
                    url, poolclass=NullPool, connect_args=_connect_args(url, self.timeout or 2.0)
                )
            return self._own

    def run(self) -> list[Observation]:
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        engine = self._probe_engine()
        started = time.perf_counter()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(self.query)
        except DBAPIError as exc:
            raise CheckFailed(_first_line(exc.orig) if exc.orig else _first_line(exc)) from None
        except SQLAlchemyError as exc:
            raise CheckFailed(f"{type(exc).__name__}: {_first_line(exc)}") from None
        except OSError as exc:
            raise CheckFailed(f"{type(exc).__name__}: {_first_line(exc)}") from None
        observations = [Observation("responseTime", _ms(started), "ms")]
        pool = _pool_use(self.engine)
        if pool is not None:
            observations.append(pool)
        return observations

    def secrets(self) -> Iterable[str]:
        url = self.url if self.url is not None else getattr(self.engine, "url", None)
        if url is None:
            return ()
        if isinstance(url, str):
            try:
                from sqlalchemy import make_url

                url = make_url(url)
            except Exception:
                return (str(url),)
        out = [url.render_as_string(hide_password=False)]
        if url.password:
            out.append(str(url.password))
        return out

    def close(self) -> None:
        with self._lock:
            own, self._own = self._own, None
        if own is not None:
            own.dispose()


def _connect_args(url: Any, timeout: float) -> dict[str, Any]:
    """Driver timeouts for the probe's connections, by database backend."""
    backend = url.get_backend_name()
    seconds = max(1, math.ceil(timeout))
    if backend == "postgresql":
        # libpq's connect_timeout has a floor of 2 s; the runner's deadline is the real one.
        return {
            "connect_timeout": max(2, seconds),
            "options": f"-c statement_timeout={int(timeout * 1000)}",
        }
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": seconds, "read_timeout": seconds}
    if backend == "sqlite":
        return {"timeout": timeout}
    return {}


def _pool_use(engine: Any) -> Observation | None:
    """How much of the app's pool is in use, read without taking a connection."""
    pool = getattr(engine, "pool", None)
    if pool is None or not hasattr(pool, "checkedout") or not hasattr(pool, "size"):
        return None
    try:
        in_use = int(pool.checkedout())
        size = int(pool.size())
        overflow = int(getattr(pool, "_max_overflow", 0))
    except Exception:
        return None
    capacity = None if overflow < 0 else size + overflow
    status = Status.PASS
    output = None
    if capacity is not None and in_use >= capacity:
        status = Status.WARN
        output = f"the app's pool is exhausted: {in_use} of {capacity} connections in use"
    return Observation(
        "connections",
        in_use,
        "connections",
        status,
        output=output,
        extra={"poolSize": size, "poolCapacity": capacity},
    )


@dataclass
class RedisCheck(HealthCheck):
    """``PING`` on a fresh connection with socket timeouts set and retries off.

    A default redis-py 8.1 client with ``socket_timeout=1`` took 15.7 s to give up on a server
    that accepts and never answers (it retried on 11 connections): this one retries nothing,
    and closes its connection after each run.

    :param url: ``redis://[:password@]host:port/db``; never shown.
    """

    requires: ClassVar[tuple[tuple[str, str], ...]] = (("redis", "redis"),)

    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)

    component_type = "datastore"

    def run(self) -> Observation:
        redis = _optional.require("redis", "redis", "RedisCheck")
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = self.timeout or 2.0
        started = time.perf_counter()
        client = None
        try:
            # single_connection_client: connects here, so this is inside the try.
            client = redis.Redis.from_url(
                self.url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                single_connection_client=True,
            )
            client.ping()
        except redis.RedisError as exc:
            raise CheckFailed(f"{type(exc).__name__}: {_first_line(exc)}") from None
        finally:
            if client is not None:
                client.close()
        return Observation("responseTime", _ms(started), "ms")

    def secrets(self) -> Iterable[str]:
        from urllib.parse import urlsplit

        out = [self.url]
        password = urlsplit(self.url).password
        if password:
            out.append(password)
        return out
