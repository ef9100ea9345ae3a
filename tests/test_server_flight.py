"""Arrow Flight over loopback with pyarrow.flight: discovery and live do_get streams."""

from __future__ import annotations

import threading

import anyio
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from engine import Engine, load_config
from tests.live import SERVICE_YAML, message, send_tcp, wait_until

pytestmark = pytest.mark.anyio


async def test_flight_lists_streams_and_serves_live_batches_until_shutdown():
    got: dict[bytes, pa.Table] = {}

    def read(url: str, ticket: bytes) -> None:
        with fl.connect(url) as client:
            got[ticket] = client.do_get(fl.Ticket(ticket)).read_all()

    async with Engine(load_config(SERVICE_YAML)) as eng:
        url = eng.flight[0].url
        client = fl.connect(url)
        names = sorted(
            info.descriptor.path[0] for info in await anyio.to_thread.run_sync(lambda: list(client.list_flights()))
        )
        assert names == [b"events", b"events.rejects", b"other", b"other.rejects"]
        schema = await anyio.to_thread.run_sync(client.get_schema, fl.FlightDescriptor.for_path("events"))
        assert schema.schema == eng.streams["events"].parser.schema
        info = await anyio.to_thread.run_sync(client.get_flight_info, fl.FlightDescriptor.for_path("events.rejects"))
        assert info.endpoints[0].ticket.ticket == b"events.rejects"
        # (pyarrow's get_schema callback, unlike get_flight_info's, does not map a Flight
        # error to its status: the client sees it as an unknown error, detail included)
        with pytest.raises(pa.ArrowException, match="no such stream"):
            await anyio.to_thread.run_sync(client.get_schema, fl.FlightDescriptor.for_path("nope"))
        deep = b'{"stream":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        for bad in (b'{"stream": ["events"]}', b'{"stream": {"a": 1}}', b"{", deep):  # a clean error, no traceback
            with pytest.raises(fl.FlightServerError, match="a JSON ticket needs") as err:
                await anyio.to_thread.run_sync(lambda t=bad: client.do_get(fl.Ticket(t)).read_all())
            assert "Traceback" not in str(err.value)
        client.close()

        readers = [threading.Thread(target=read, args=(url, t)) for t in (b"events", b"events.rejects")]
        for r in readers:
            r.start()
        stream = eng.streams["events"]
        await wait_until(lambda: stream.batches.consumers == 1 and stream.rejects.consumers == 1)
        data = b"".join(message(i) + b"\n" for i in range(3000)) + b'{"seq":1.5}\n'
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, data, 5)
    for r in readers:
        r.join(30)
    assert got[b"events"].column("seq").to_pylist() == list(range(3000))
    assert got[b"events"].column("kind").to_pylist()[:3] == ["a", "b", "a"]  # dictionaries arrive
    assert got[b"events.rejects"].column("error").to_pylist() == ["type_mismatch"]


async def test_clients_that_hang_up_on_a_quiet_topic_are_forgotten(monkeypatch):
    """A hang-up is seen only by the call waiting for the next batch: on a topic that
    publishes nothing (the dead letters of a clean stream), every client that ever
    connected and left would keep a gRPC thread and a consumer."""
    from engine.server import flight

    monkeypatch.setattr(flight, "HANGUP_POLL_S", 0.05)
    async with Engine(load_config(SERVICE_YAML)) as eng:
        url = eng.flight[0].url
        rejects = eng.streams["events"].rejects

        def visit() -> None:
            client = fl.connect(url)
            assert client.do_get(fl.Ticket(b"events.rejects")).schema == rejects.schema  # the call is up
            client.close()

        for _ in range(20):
            await anyio.to_thread.run_sync(visit)
        await wait_until(lambda: rejects.consumers == 0, timeout=10)
        assert rejects.next_seq == 0  # nothing was published that could have woken them
