"""Access: bearer tokens on HTTP and Flight, TLS on TCP, HTTP and Flight, over loopback."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import anyio
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from engine import ConfigError, Engine, load_config
from tests.live import SERVICE_YAML, assert_pushed_back, column, drain, message, send_tcp, wait_until

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-T0ken"
ENV = "QUIVER_TEST_TOKEN"
AUTH_YAML = SERVICE_YAML + f"auth: {{token_env: {ENV}}}\n"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(ENV, TOKEN)
    return TOKEN


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert path, key path)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"],
        check=True,
        capture_output=True,
    )
    return crt, key


def tls_yaml(cert: tuple[str, str], base: str = AUTH_YAML, **overrides: str) -> str:
    """``base`` with TLS on its first TCP listener and on its HTTP and Flight listeners."""
    tls = f"tls: {{cert: {cert[0]}, key: {cert[1]}}}"
    text = (
        base.replace("- {kind: tcp, port: 0, stream: events}", f"- {{kind: tcp, port: 0, stream: events, {tls}}}")
        .replace("- {kind: http, port: 0}", f"- {{kind: http, port: 0, {tls}}}")
        .replace("- {kind: flight, port: 0}", f"- {{kind: flight, port: 0, {tls}}}")
    )
    for old, new in overrides.items():
        text = text.replace(old, new)
    return text


def client_context(cert: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert[0])


def request(url, data=None, headers=None, method=None, context=None):
    """(status, headers, parsed JSON body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


async def call(*args, **kwargs):
    return await anyio.to_thread.run_sync(lambda: request(*args, **kwargs))


def read_arrow(url: str, headers: dict, into: dict, context=None) -> None:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=60, context=context) as resp:
        into["table"] = pa.ipc.open_stream(resp).read_all()


def send_tls(port: int, data: bytes, cert: tuple[str, str]) -> None:
    """Send ``data`` over TLS on a fresh connection, then end it (without a TLS
    close_notify, as most producers do) and wait until the server closes it."""
    raw = socket.create_connection(("127.0.0.1", port))
    with client_context(cert).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # leaves TLS: from here on s is the plain socket
        while s.recv(1 << 16):  # session tickets, unread by the TLS layer; then the end
            pass


def options(token: str | None) -> fl.FlightCallOptions:
    headers = [] if token is None else [(b"authorization", b"Bearer " + token.encode())]
    return fl.FlightCallOptions(headers=headers, timeout=30)


async def test_http_refuses_requests_without_the_token_and_serves_those_with_it(token):
    body = b"".join(message(i) + b"\n" for i in range(20))
    async with Engine(load_config(AUTH_YAML)) as eng:
        base = eng.http[0].url
        refused = [
            ("GET", "/v1/streams", None, {}),
            ("GET", "/v1/streams/events/arrow", None, {}),
            ("GET", "/v1/streams/events/rejects/arrow", None, {"Authorization": "Bearer nope"}),
            ("GET", "/v1/nowhere", None, {}),  # 401 before 404: nothing is revealed
            ("GET", "/metrics", None, {}),
            ("POST", "/v1/streams/events", body, {}),
            ("POST", "/v1/streams/events", body, {"Authorization": "Bearer wrong"}),
            ("POST", "/v1/streams/events", body, {"Authorization": f"Bearer {token}x"}),
            ("POST", "/v1/streams/events", body, {"Authorization": f"Basic {token}"}),
            ("POST", "/v1/streams/events", body, {"Authorization": token}),
            ("POST", "/v1/streams/events", b"x" * (1 << 20), {}),  # refused unread, whatever its size
        ]
        for method, path, data, headers in refused:
            status, answer_headers, answer = await call(base + path, data, headers, method)
            assert status == 401, (method, path, headers)
            assert answer_headers["WWW-Authenticate"] == "Bearer"
            assert answer_headers["Connection"] == "close"  # a refused body is not read
            assert answer == {"error": "missing or invalid bearer token"}
        assert eng.stats("events")["received"] == 0  # nothing of the refused bodies was taken
        assert eng.streams["events"].batches.consumers == 0

        status, _, answer = await call(base + "/healthz")  # open: load balancers probe it
        assert (status, answer) == (200, {"status": "ok"})

        got: dict = {}
        reader = threading.Thread(target=read_arrow, args=(base + "/v1/streams/events/arrow", BEARER, got))
        reader.start()
        await wait_until(lambda: eng.streams["events"].batches.consumers == 1)
        status, _, answer = await call(base + "/v1/streams/events", body, BEARER)
        assert status == 200 and answer["accepted"] == 20
        lower = {"Authorization": f"bearer {token}"}  # the scheme is case-insensitive
        status, _, answer = await call(base + "/v1/streams", headers=lower)
        assert status == 200 and [s["name"] for s in answer["streams"]] == ["events", "other"]
    await anyio.to_thread.run_sync(reader.join, 30)
    assert got["table"].column("seq").to_pylist() == list(range(20))
    assert eng.stats("events")["received"] == 20


def post_refused_midway(port: int, length: int, first: bytes, rest: bytes) -> bytes:
    """POST a body of ``length`` bytes with no token: send ``first``, wait for the server's
    answer (it refuses at once, and closes its side), send ``rest`` anyway (as a client does
    that writes its whole body before reading), then read all it answers until it closes."""
    head = b"POST /v1/streams/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + first)
        answer = b""
        while b"\r\n\r\n" not in answer:  # the status line and headers have come
            answer += s.recv(1 << 16)
        s.sendall(rest)
        s.shutdown(socket.SHUT_WR)
        return answer + b"".join(iter(lambda: s.recv(1 << 16), b""))


async def test_a_refused_body_still_being_sent_gets_its_answer_not_a_reset(token):
    """Closing with the client's bytes unread makes the kernel send a reset, which can reach
    the client before it reads the 401; the server drains (bounded) until the client is done."""
    async with Engine(load_config(AUTH_YAML)) as eng:
        port = eng.http[0].port
        answer = await anyio.to_thread.run_sync(post_refused_midway, port, 4 << 20, b"x" * (2 << 20), b"x" * (2 << 20))
        assert answer.startswith(b"HTTP/1.1 401 ")
        assert b"missing or invalid bearer token" in answer
        assert eng.stats("events")["received"] == 0


async def test_flight_refuses_calls_without_the_token(token):
    got: dict[str, pa.Table] = {}

    def read(url: str) -> None:
        with fl.connect(url) as client:
            got["events"] = client.do_get(fl.Ticket(b"events"), options(token)).read_all()

    async with Engine(load_config(AUTH_YAML)) as eng:
        url = eng.flight[0].url
        client = fl.connect(url)
        descriptor = fl.FlightDescriptor.for_path("events")
        for bad in (None, "wrong", token + "x"):
            o = options(bad)
            with pytest.raises(fl.FlightUnauthenticatedError):
                await anyio.to_thread.run_sync(lambda: list(client.list_flights(options=o)))  # noqa: B023
            with pytest.raises(fl.FlightUnauthenticatedError):
                await anyio.to_thread.run_sync(lambda: client.do_get(fl.Ticket(b"events"), o).read_all())  # noqa: B023
            with pytest.raises(fl.FlightUnauthenticatedError):
                await anyio.to_thread.run_sync(client.get_flight_info, descriptor, o)
            # pyarrow's client reports this one call's refusal as a plain OSError
            with pytest.raises((fl.FlightUnauthenticatedError, OSError), match="Unauthenticated"):
                await anyio.to_thread.run_sync(client.get_schema, descriptor, o)
        assert eng.streams["events"].batches.consumers == 0
        infos = await anyio.to_thread.run_sync(lambda: list(client.list_flights(options=options(token))))
        assert sorted(i.descriptor.path[0] for i in infos) == [b"events", b"events.rejects", b"other", b"other.rejects"]
        client.close()

        reader = threading.Thread(target=read, args=(url,))
        reader.start()
        await wait_until(lambda: eng.streams["events"].batches.consumers == 1)
        await anyio.to_thread.run_sync(send_tcp, eng.tcp[0].port, b"".join(message(i) + b"\n" for i in range(50)))
    await anyio.to_thread.run_sync(reader.join, 30)
    assert got["events"].column("seq").to_pylist() == list(range(50))


@pytest.mark.parametrize("value", [None, "", "  \n"])
async def test_a_missing_or_empty_token_variable_stops_the_start(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    eng = Engine(load_config(AUTH_YAML))
    with pytest.raises(ConfigError, match=rf"^auth\.token_env: environment variable {ENV} is not set \(or empty\)$"):
        async with eng:
            pass
    assert eng.http == [] and eng.tcp == [] and eng.flight == []  # nothing was opened


async def test_an_unusable_certificate_stops_the_start(token, tmp_path, cert):
    missing = (str(tmp_path / "nope.pem"), cert[1])
    with pytest.raises(ConfigError, match=r"^listen\.0\.tls: cannot load certificate .*nope\.pem"):
        async with Engine(load_config(tls_yaml(missing))):
            pass
    swapped = (cert[1], cert[0])  # a key where the certificate belongs
    with pytest.raises(ConfigError, match=r"^listen\.0\.tls: cannot load certificate"):
        async with Engine(load_config(tls_yaml(swapped))):
            pass
    # an encrypted key: OpenSSL would ask for its pass phrase on the terminal, and wait
    encrypted = str(tmp_path / "encrypted.pem")
    subprocess.run(
        ["openssl", "pkey", "-in", cert[1], "-aes256", "-passout", "pass:secret", "-out", encrypted],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ConfigError, match=r"^listen\.0\.tls: cannot load certificate .*encrypted"):
        async with Engine(load_config(tls_yaml((cert[0], encrypted)))):
            pass


async def test_tls_on_tcp_http_and_flight(token, cert):
    rows: list[pa.RecordBatch] = []
    ctx = client_context(cert)
    async with anyio.create_task_group() as consumers, Engine(load_config(tls_yaml(cert))) as eng:
        tcp, plain, http, flight = eng.tcp[0], eng.tcp[1], eng.http[0], eng.flight[0]
        assert tcp.url == f"tls://127.0.0.1:{tcp.port}" and plain.url.startswith("tcp://")
        assert http.url == f"https://127.0.0.1:{http.port}"
        assert flight.url == f"grpc+tls://127.0.0.1:{flight.port}"
        consumers.start_soon(drain, eng.subscribe("events"), rows)

        await anyio.to_thread.run_sync(send_tls, tcp.port, b"".join(message(i) + b"\n" for i in range(100)), cert)
        # an unterminated last line is a message when the producer ends cleanly
        await anyio.to_thread.run_sync(send_tls, tcp.port, message(100) + b"\n" + message(101), cert)
        body = b"".join(message(i) + b"\n" for i in range(200, 250))
        status, _, answer = await call(f"{http.url}/v1/streams/events", body, BEARER, context=ctx)
        assert status == 200 and answer["accepted"] == 50
        status, _, _ = await call(f"{http.url}/v1/streams", context=ctx)
        assert status == 401  # TLS does not replace the token

        def flight_names() -> list[bytes]:
            with fl.connect(flight.url, tls_root_certs=open(cert[0], "rb").read()) as client:
                return sorted(i.descriptor.path[0] for i in client.list_flights(options=options(token)))

        names = await anyio.to_thread.run_sync(flight_names)
        assert names == [b"events", b"events.rejects", b"other", b"other.rejects"]
        await wait_until(lambda: eng.stats("events")["received"] == 152)
    assert sorted(column(rows, "seq")) == [*range(102), *range(200, 250)]


async def test_a_plain_text_client_of_a_tls_listener_is_closed_and_nothing_is_ingested(token, cert):
    async with Engine(load_config(tls_yaml(cert))) as eng:
        port = eng.tcp[0].port

        def plain() -> bytes:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.settimeout(20)
                s.sendall(b"".join(message(i) + b"\n" for i in range(10)))
                try:
                    return s.recv(1 << 16)
                except ConnectionResetError:
                    return b""

        for _ in range(3):
            assert await anyio.to_thread.run_sync(plain) == b""  # closed, no answer
        await wait_until(lambda: eng.tcp[0].connections == 0)
        assert eng.stats("events")["received"] == 0
        # the listener is unharmed: a TLS producer still gets through
        await anyio.to_thread.run_sync(send_tls, port, message(1) + b"\n", cert)
        await wait_until(lambda: eng.stats("events")["received"] == 1)


async def test_a_silent_client_cannot_hold_a_tls_slot(token, cert):
    limits = "limits: {max_message_bytes: 4KiB, message_timeout_s: 0.3}"
    cfg = load_config(tls_yaml(cert, **{"limits: {max_message_bytes: 4KiB}": limits}))
    async with Engine(cfg) as eng:
        with socket.create_connection(("127.0.0.1", eng.tcp[0].port)) as s:
            s.settimeout(20)
            await wait_until(lambda: eng.tcp[0].connections == 1)
            assert await anyio.to_thread.run_sync(s.recv, 1) == b""  # no handshake: hung up on
        await wait_until(lambda: eng.tcp[0].connections == 0)
        assert eng.tcp[0].limit_hits["message_timeout"] == 1


async def test_a_tls_producer_ahead_of_the_stream_is_pushed_back(token, cert):
    """As tests/test_server_tcp.py's regression test, through TLS: the stream is stalled by
    a consumer that does not read, and the producer must be held back by TCP."""
    cfg = load_config(
        tls_yaml(
            cert,
            **{
                "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 3": (
                    "batch: {max_messages: 500, max_bytes: 64KiB, linger_ms: 5}\n    arenas: 2\n    consumer_queue: 1"
                )
            },
        )
    )
    line = message(1, "x" * 15) + b"\n"
    total = 1_000_000
    data = line * total  # ~40 MB
    async with Engine(cfg) as eng:
        sub = eng.subscribe("events")
        raw = socket.create_connection(("127.0.0.1", eng.tcp[0].port))
        sock = await anyio.to_thread.run_sync(
            lambda: client_context(cert).wrap_socket(raw, server_hostname="127.0.0.1")
        )
        await assert_pushed_back(eng, sock, data, 0, sub, total)


async def test_a_tls_producer_that_never_reads_does_not_hold_up_shutdown(token, cert):
    """Closing a TLS connection sends close_notify; a producer that never reads never
    answers it, and waiting for the answer (asyncio's default: 30 s) would take the whole
    shutdown timeout. What the producer sent is still delivered."""
    cfg = load_config(tls_yaml(cert))
    async with Engine(cfg) as eng:
        sub = eng.subscribe("events")
        raw = socket.create_connection(("127.0.0.1", eng.tcp[0].port))
        sock = await anyio.to_thread.run_sync(
            lambda: client_context(cert).wrap_socket(raw, server_hostname="127.0.0.1")
        )
        await anyio.to_thread.run_sync(sock.sendall, message(1) + b"\n")
        with anyio.fail_after(30):
            assert (await sub.next_batch()).num_rows == 1
        began = time.perf_counter()
    assert time.perf_counter() - began < 10
    sock.close()
