"""Writes line protocol to an InfluxDB v2 write API (``POST /api/v2/write``) with
influxdb-client's asyncio client, and retries with backoff and jitter.

Outcomes of one write: accepted (2xx); :class:`~gateway.errors.InfluxBatchRefused` for a
4xx that no retry can fix (400 bad line protocol, 413 too large, 422 unprocessable: the
batch is given up and counted); :class:`~gateway.errors.InfluxWriteFailed` for everything
worth retrying (server unreachable, 5xx, 429, and 401/403/404: a token or bucket an
operator can fix while the data waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from gateway.backoff import Backoff
from gateway.errors import InfluxBatchRefused, InfluxWriteFailed
from gateway.repeated_log import RepeatedLog

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
    from influxdb_client.domain.write_precision import WritePrecision

log = logging.getLogger(__name__)

#: statuses that retrying cannot fix: the batch itself is wrong
_REJECTED = {400, 413, 422}


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    url: str
    bucket: str
    org: str = ""
    token: str | None = None
    precision: str = "ms"
    timeout_s: float = 10.0


def _describe_status(status: int, body: object) -> str:
    hints = {
        401: "unauthorized: check the token",
        403: "forbidden: the token may not write to this bucket",
        404: "not found: check the bucket and org",
        413: "batch too large: lower batch_size",
        429: "too many requests",
    }
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    return f"HTTP {status}: {hints.get(status, text.strip()[:300] or 'error')}"


def _retry_after(exc: Any) -> float | None:
    try:
        value = (exc.headers or {}).get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class InfluxWriter:
    """One target; the aiohttp session is opened by the first write (on the running loop)."""

    def __init__(self, target: InfluxTarget) -> None:
        self.target = target
        self._client: InfluxDBClientAsync | None = None

    async def write(self, body: bytes) -> None:
        """One POST; raises :class:`InfluxWriteFailed` or :class:`InfluxBatchRefused`."""
        # imported here: the client and aiohttp cost ~0.4 s at gateway start-up otherwise
        import aiohttp
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.rest import ApiException

        t = self.target
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=t.url, token=t.token or "", org=t.org or "-",
                timeout=int(t.timeout_s * 1000),
            )  # fmt: skip
        try:
            await self._client.write_api().write(
                bucket=t.bucket, org=t.org or "-", record=body,
                # the library hints its class of str constants; it sends the str
                write_precision=cast("WritePrecision", t.precision),
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            reason = _describe_status(status, exc.body)
            if status in _REJECTED:
                raise InfluxBatchRefused(reason, status) from None
            raise InfluxWriteFailed(reason, _retry_after(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError, InfluxDBError) as exc:
            raise InfluxWriteFailed(f"cannot reach {t.url}: {exc or type(exc).__name__}") from None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()  # type: ignore[no-untyped-call]  # unannotated upstream


def write_failures_log(writer: InfluxWriter) -> RepeatedLog:
    """The log of failed writes to ``writer``'s server: the first reason, a summary a
    minute while it stays down, the recovery (gateway/repeated_log.py). Kept by the caller
    across batches."""
    return RepeatedLog(log, f"InfluxDB {writer.target.url}: write failed", logging.WARNING)


async def write_until_done(
    writer: InfluxWriter,
    body: bytes,
    backoff: Backoff,
    on_retry: Callable[[str], None] = lambda reason: None,
    failures: RepeatedLog | None = None,
) -> None:
    """Write ``body`` until the server accepts it, waiting between attempts with backoff
    and jitter (at least the server's Retry-After). Raises :class:`InfluxBatchRefused`;
    cancellation stops the retries. Failures are logged to ``failures`` (by default a
    log of this call's own)."""
    failures = failures or write_failures_log(writer)
    while True:
        try:
            await writer.write(body)
        except InfluxWriteFailed as exc:
            reason = str(exc)
            on_retry(reason)
            delay = backoff.next_delay()
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            failures.failure(f"{reason}; retrying with backoff", key=reason)
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        failures.recovery(f"InfluxDB {writer.target.url} accepts writes again")
        return
