"""Small Kafka admin helpers shared by the worker, ``simulate --bootstrap``, ``tail`` and the benchmarks.

Everything here is async (aiokafka). Every failure a user can act on (broker unreachable, topic missing
while creation is off, wrong partition count, broker refusing a creation) becomes a ``UserError`` with a
one-line message that names the bootstrap servers and the topic -- never the SASL password.

Typical use::

    settings = kafka_settings(args)
    counts = await ensure_topics(settings, gatekeeper_topics(settings))  # {"telemetry": 8, ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from gatekeeper.errors import UserError
from gatekeeper.shell.kafka_settings import KafkaSettings

TOPIC_ALREADY_EXISTS = 36
CREATE_WAIT_S = 10.0  # how long a just-created topic may take to show all its partitions in the metadata


TELEMETRY_RETENTION_MS = 7 * 86_400_000  # enough to rebuild a worker's state window by replay
DLQ_RETENTION_MS = 14 * 86_400_000


def gatekeeper_topics(settings: KafkaSettings) -> dict[str, dict[str, str]]:
    """Every gatekeeper topic with its creation configs, as the Kafka bindings of ``streams/asyncapi.yaml`` state
    them (decisions and breaches: ``decisions_retention_ms``)."""
    names = settings.topics
    retention = {"retention.ms": str(names.decisions_retention_ms)}
    return {
        names.telemetry: {"retention.ms": str(TELEMETRY_RETENTION_MS)},
        names.decisions: retention,
        names.breaches: retention,
        names.dlq: {"retention.ms": str(DLQ_RETENTION_MS)},
    }


@contextlib.asynccontextmanager
async def admin_client(settings: KafkaSettings) -> AsyncIterator[Any]:
    """A started ``AIOKafkaAdminClient``; an unreachable or refusing cluster is a ``UserError``."""
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), request_timeout_ms=30_000)
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # the UserError below says it once, without a log line before it
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        why = describe_error(exc) + await tls_problem(settings)
        raise UserError(f"cannot connect to Kafka at {settings.bootstrap}: {why}") from None
    finally:
        client_log.setLevel(level)
    try:
        yield admin
    finally:
        await admin.close()


async def partition_counts(admin: Any, names: Iterable[str] | None = None, *, led: bool = False) -> dict[str, int]:
    """Partition count of each existing topic (of ``names``, or all); a missing topic is simply absent, and
    so, with ``led``, is a topic with a partition that has no leader yet.

    Reads the metadata of *all* topics: asking for named topics would let the broker auto-create them with
    its default partition count (``auto.create.topics.enable``)."""
    wanted = None if names is None else set(names)
    counts: dict[str, int] = {}
    for topic in await admin.describe_topics():
        name, partitions = topic["topic"], topic["partitions"]
        if (wanted is not None and name not in wanted) or topic["error_code"] != 0:
            continue
        if not led or all(p["error_code"] == 0 and p["leader"] >= 0 for p in partitions):
            counts[name] = len(partitions)
    return counts


async def topic_partitions(settings: KafkaSettings, name: str) -> int | None:
    """How many partitions topic ``name`` has, or None when it does not exist (never creates it)."""
    async with admin_client(settings) as admin:
        return (await partition_counts(admin, [name])).get(name)


async def ensure_topics(
    settings: KafkaSettings,
    topics: Mapping[str, Mapping[str, str]],
    *,
    partitions: int | None = None,
) -> dict[str, int]:
    """Make sure every topic of ``topics`` (name -> topic configs such as ``{"retention.ms": "..."}``) exists
    with ``partitions`` partitions (default ``settings.topics.partitions``); returns name -> partitions.

    Missing topics are created with ``settings.topics.replication`` replicas and their configs, unless
    ``settings.topics.create`` is off (``--no-create-topics``): then a missing topic is a ``UserError``.
    An existing topic with another partition count is a ``UserError`` too (keys would map to other
    partitions than the gate state expects); its configs are left as they are. Safe to call concurrently
    from several processes: a topic created by someone else in between counts as existing.
    """
    wanted = partitions or settings.topics.partitions
    where = f"Kafka at {settings.bootstrap}"
    async with admin_client(settings) as admin:
        try:
            counts = await partition_counts(admin, topics)
            missing = [name for name in topics if name not in counts]
            if missing and not settings.topics.create:
                raise UserError(
                    f"topic(s) {', '.join(missing)} do not exist on {where} and topic creation is off "
                    "(--no-create-topics); create them or drop that flag"
                )
            if missing:
                new = [
                    NewTopic(name, wanted, settings.topics.replication, topic_configs=dict(topics[name]))
                    for name in missing
                ]
                response = await admin.create_topics(new)
                for name, code, *rest in response.topic_errors:
                    if code not in (0, TOPIC_ALREADY_EXISTS):
                        message = (rest[0] if rest else None) or for_code(code).__name__
                        raise UserError(f"{where} refused to create topic {name}: {message}")
                counts |= await _wait_for_partitions(admin, missing)
        except KafkaError as exc:
            raise UserError(f"topic set-up on {where} failed: {describe_error(exc)}") from None
    wrong = {name: n for name, n in counts.items() if name in topics and n != wanted}
    if wrong:
        found = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise UserError(
            f"topic partition counts on {where} differ from the configured {wanted} ({found}); pass "
            f"--partitions to match, or recreate the topic(s)"
        )
    return {name: counts[name] for name in topics}


async def _wait_for_partitions(admin: Any, names: list[str]) -> dict[str, int]:
    """Partition counts of just-created topics, once the metadata shows them with a leader for every
    partition (creation is asynchronous; producing earlier gets retriable NotLeaderForPartition errors)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CREATE_WAIT_S
    while True:
        counts = await partition_counts(admin, names, led=True)
        if len(counts) == len(names) or loop.time() > deadline:
            break
        await asyncio.sleep(0.1)
    for name in names:
        if name not in counts:
            raise UserError(f"topic {name} was created but has no leader for every partition after {CREATE_WAIT_S:g} s")
    return counts


async def tls_problem(settings: KafkaSettings, timeout: float = 10.0, answer_s: float = 2.0) -> str:
    """Why TLS fails with the first bootstrap server, as a clause to add to a connection error ("" when the
    protocol uses no TLS, TLS works or the server cannot be reached at all): aiokafka reports an untrusted
    certificate, a listener without TLS or a client certificate refused only as "Unable to bootstrap"."""
    if not settings.tls:
        return ""
    import ssl  # here, not at start-up: most runs use no TLS

    host, port = settings.servers()[0]
    host = host.strip("[]")
    where = f"{host}:{port}"
    try:
        opening = asyncio.open_connection(host, int(port), ssl=settings.ssl_context(), server_hostname=host)
        reader, writer = await asyncio.wait_for(opening, timeout)
    except ssl.SSLCertVerificationError as exc:
        hint = "is --ssl-cafile the CA that signed the broker's certificate?"
        return f"; the TLS handshake with {where} failed: {exc.verify_message} ({hint})"
    except ssl.SSLError as exc:
        return f"; the TLS handshake with {where} failed: {exc.reason or exc} (does that listener speak TLS?)"
    except (ConnectionResetError, ConnectionAbortedError):  # a listener without TLS drops the handshake
        return f"; {where} closed the connection during the TLS handshake (does that listener speak TLS?)"
    except (OSError, TimeoutError):
        return ""
    try:  # under TLS 1.3 a server refuses the client's certificate (or its absence) after the handshake
        await asyncio.wait_for(reader.read(1), answer_s)
        refused = ""
    except ssl.SSLError as exc:
        hint = (
            "it does not trust the client certificate of --ssl-certfile" if settings.ssl_certfile
            else "it requires a client certificate: --ssl-certfile and --ssl-keyfile"
        )  # fmt: skip
        refused = f"; {where} refused the TLS session: {exc.reason or exc} ({hint})"
    except (OSError, TimeoutError):  # a Kafka broker waits for a request: nothing to say about TLS
        refused = ""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return refused


def describe_error(exc: BaseException) -> str:
    """``Class: message`` of an exception, once (aiokafka's errors already start with their class name)."""
    name, text = type(exc).__name__, str(exc).strip()
    return text if text.startswith(name) else f"{name}: {text}" if text else name
