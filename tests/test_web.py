"""The web view: access rules, routes, streams, metrics, and the page in a real headless Chromium.

Everything runs for real on loopback: the sink's own HTTP server, HTTP clients from the standard
library, the real pipeline with the real int8 model on an ffmpeg-made video, Debian's Chromium.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_sdk import registry
from edge_sdk.errors import ConfigError, SinkError
from edge_sdk.metrics import Metrics
from edge_sdk.types import Frame, Label, Prediction, Timings
from edge_sdk.web.access import BindAddress
from edge_sdk.web.server import BOUNDARY
from edge_sdk.web.sink import WebSink

TOKEN = "s3cret-token-for-tests"


def prediction(i: int, label: str = "tench") -> Prediction:
    return Prediction(
        frame_index=i, timestamp_ns=time.monotonic_ns(),
        top=(Label(0, label, 0.875), Label(1, "goldfish", 0.0625)),
        timings=Timings(capture_wait=0.5, preprocess=1.0, inference=6.0, postprocess=0.25, age=9.0),
        model="squeezenet1.1",
    )


@pytest.fixture(scope="module")
def picture(imagenet: Path) -> np.ndarray:
    image = cv2.imread(str(imagenet / "n01440764_tench.jpg"))
    assert image is not None
    return np.ascontiguousarray(cv2.resize(image, (640, 480)))


def frame(image: np.ndarray, i: int) -> Frame:
    return Frame(image, i, time.monotonic_ns(), "test")


@pytest.fixture()
def sink() -> Iterator[WebSink]:
    with WebSink(bind="127.0.0.1:0", stream_fps=0) as s:
        yield s


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


class MjpegViewer:
    """Reads an MJPEG stream in a thread, keeping the JPEGs it got (or just connects, if lazy)."""

    def __init__(self, sink: WebSink, *, read: bool = True, query: str = "") -> None:
        self.jpegs: list[bytes] = []
        self.ended = threading.Event()
        self._sock = socket.create_connection((sink.address.host, sink.address.port), timeout=10)
        self._sock.sendall(f"GET /stream.mjpg{query} HTTP/1.0\r\n\r\n".encode())
        self.response = http.client.HTTPResponse(self._sock)
        self.response.begin()
        assert self.response.status == 200, self.response.status
        assert BOUNDARY in self.response.headers["Content-Type"]
        self._thread = threading.Thread(target=self._read if read else lambda: None, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stream = self.response
        try:
            while True:
                line = stream.readline()
                if not line:
                    break
                if line.strip() != f"--{BOUNDARY}".encode():
                    continue
                headers = {}
                while (line := stream.readline().strip()):
                    key, _, value = line.decode().partition(":")
                    headers[key.lower()] = value.strip()
                self.jpegs.append(stream.read(int(headers["content-length"])))
        except (OSError, ValueError):
            pass
        finally:
            self.ended.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.response.close()  # its file object keeps the socket open otherwise
        self._sock.close()


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- bind address and token ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:8080", "127.0.0.1", 8080), ("0.0.0.0:80", "0.0.0.0", 80),
    ("[::1]:9000", "::1", 9000), ("localhost:8081", "127.0.0.1", 8081),
    (":8082", "127.0.0.1", 8082), ("8083", "127.0.0.1", 8083),
])
def test_bind_address_forms(text: str, host: str, port: int) -> None:
    assert BindAddress.parse(text) == BindAddress(host, port)


@pytest.mark.parametrize("text", ["", "8080:", "camera.local:8080", "1.2.3.4:99999",
                                  "::1:8080", "[::1]8080", "1.2.3.4:http"])
def test_bad_bind_address(text: str) -> None:
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1|0-65535") as info:
        WebSink(bind=text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"quality": "80"}, TypeError, "quality must be an integer"),
    ({"bind": None}, TypeError, "bind must be a string 'ADDR:PORT'"),
    ({"max_width": 640.0}, TypeError, "max_width must be an integer"),
    ({"stream_fps": float("nan")}, ValueError, "stream_fps must be a finite number"),
    ({"quality": 0}, ValueError, "quality must be within"),
])
def test_bad_option_types_and_values(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        WebSink(**options)


def test_ipv6_loopback() -> None:
    with WebSink(bind="[::1]:0") as s:
        assert s.url.startswith("http://[::1]:")
        assert get(s.url + "healthz")[0] == 200
        assert get(s.url + "api/prediction")[0] == 503  # [::1] is a loopback Host


def test_non_loopback_bind_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--web-token-file FILE.*insecure=True"):
        WebSink(bind="0.0.0.0:0")
    with WebSink(bind="0.0.0.0:0", insecure=True) as open_sink:
        assert get(open_sink.url + "api/prediction")[0] == 503  # served, just nothing yet
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with WebSink(bind="0.0.0.0:0", token_file=token_file) as guarded:
        assert get(guarded.url)[0] == 401
        assert get(guarded.url, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    with pytest.raises(ConfigError, match=r"token_file '.*missing' does not exist"):
        WebSink(bind="0.0.0.0:0", token_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="empty"):
        WebSink(bind="0.0.0.0:0", token="  ")


def test_token_checked_on_every_route_but_healthz(picture: np.ndarray) -> None:
    with WebSink(bind="127.0.0.1:0", token=TOKEN) as s:
        s.publish(prediction(0), frame(picture, 0))
        for route in ("", "index.html", "stream.mjpg", "api/prediction", "api/events", "metrics",
                      "nothing-here"):
            assert get(s.url + route)[0] == 401, route
            assert get(s.url + route, {"Authorization": "Bearer wrong"})[0] == 401, route
            assert get(s.url + route + "?token=" + TOKEN[:-1])[0] == 401, route
            assert get(s.url + route + "?token=" + TOKEN + "x")[0] == 401, route
        status, body, headers = get(s.url + "?token=" + TOKEN)
        assert status == 200 and b"EventSource" in body
        assert headers["Referrer-Policy"] == "no-referrer"
        status, body, _ = get(s.url + "api/prediction", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["frame"] == 0
        assert get(s.url + "metrics?token=" + TOKEN)[0] == 200
        assert get(s.url + "nothing-here?token=" + TOKEN)[0] == 404
        status, body, _ = get(s.url + "healthz")
        assert status == 200 and json.loads(body)["predictions"] == 1


def test_foreign_host_header_refused_without_token(sink: WebSink) -> None:
    # A page elsewhere that rebinds its own name to 127.0.0.1 still sends its name as Host.
    assert get(sink.url + "api/prediction", {"Host": "evil.example:8080"})[0] == 403
    assert get(sink.url + "api/prediction", {"Host": f"localhost:{sink.address.port}"})[0] == 503


@pytest.mark.parametrize("text", ["127.0.0.1:\u00b2", "127.0.0.1:\uff18\uff10\uff18\uff10", "\uff18\uff10"])
def test_a_port_of_non_ascii_digits_is_refused(text: str) -> None:
    # str.isdigit takes '²' (which int() then refuses) and fullwidth digits (which it reads).
    with pytest.raises(ConfigError, match=r"the port must be a number 0-65535|is not ADDR:PORT"):
        BindAddress.parse(text)


def test_an_ipv4_mapped_loopback_address_is_loopback() -> None:
    assert BindAddress.parse("[::ffff:127.0.0.1]:0").is_loopback
    with WebSink(bind="[::ffff:127.0.0.1]:0") as s:  # no token needed, as for 127.0.0.1
        assert s.policy.host_allowed("[::ffff:127.0.0.1]:80")


@pytest.mark.parametrize(("content", "match"), [
    (b"\xff\xfe\n", "is not UTF-8 text"),
    (b"\n", "is empty"),
    ("t\u00f6k\n".encode(), "may hold only letters, digits"),
    (b"a&b#c\n", "may hold only letters, digits"),
])
def test_a_token_file_that_cannot_serve_is_one_config_error(
    tmp_path: Path, content: bytes, match: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        WebSink(bind="127.0.0.1:0", token_file=token_file)
    assert "\n" not in str(info.value)


def test_a_device_as_token_file_is_refused_not_read_for_ever() -> None:
    with pytest.raises(ConfigError, match="'/dev/zero' is not a regular file"):
        WebSink(bind="127.0.0.1:0", token_file="/dev/zero")


def test_a_base64_token_works_unencoded_in_the_query() -> None:
    token = "Zm9v+YmFy/cXV4=="  # '+' would be a space to a form decoder
    with WebSink(bind="127.0.0.1:0", token=token) as s:
        assert get(s.url + "healthz?token=" + token)[0] == 200
        assert get(s.url + "api/prediction?token=" + token)[0] == 503  # allowed; nothing yet
        assert get(s.url + "api/prediction?token=" + token.replace("+", "%2B"))[0] == 503
        assert get(s.url + "api/prediction?token=" + token.replace("+", "%20"))[0] == 401


def raw_request(sink: WebSink, data: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection((sink.address.host, sink.address.port), timeout=10,
                                  source_address=(source, 0)) as conn:
        conn.sendall(data)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
        return reply


@pytest.mark.parametrize("line", [b"GARBAGE", b"GET / HTTP/9.9", b"GET / HTTP/1.1 x", b"GET / HTTP/1.x",
                                  b"GET /" + b"a" * 70000 + b" HTTP/1.0"])
def test_a_malformed_request_gets_a_4xx_reply_and_no_traceback(
    sink: WebSink, line: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    reply = raw_request(sink, line + b"\r\n\r\n")
    # A request line without a valid version is answered as HTTP/0.9 asks: the body alone.
    assert re.match(rb"(HTTP/1\.[01] )?(4\d\d|505) ", reply), reply[:200]
    if reply.startswith(b"HTTP/"):
        head = reply.partition(b"\r\n\r\n")[0]
        assert b"text/plain" in head and b"Cache-Control: no-store" in head
    assert "Traceback" not in capfd.readouterr().err


def test_clients_that_reset_their_connection_leave_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with WebSink(bind="127.0.0.1:0", token=TOKEN) as s:
        for i in range(60):
            conn = socket.create_connection((s.address.host, s.address.port), timeout=10)
            # SO_LINGER 0: close() sends a reset instead of a FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.sendall(b"GET /api/prediction HTTP/1.0\r\n\r\n" if i % 2 else b"GET /heal")
            conn.close()
        wait_until(lambda: get(s.url + "healthz")[0] == 200)
    assert "Traceback" not in capfd.readouterr().err


def test_head_answers_like_get_without_a_body_or_a_stream(sink: WebSink) -> None:
    for route, ctype in (("healthz", "application/json"), ("", "text/html"),
                         ("stream.mjpg", "multipart/x-mixed-replace")):
        reply = raw_request(sink, f"HEAD /{route} HTTP/1.0\r\n\r\n".encode())
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and ctype.encode() in head and body == b"", route
        assert b"\r\nServer: edge-sdk\r\n" in head  # and not the Python version
    assert sink.viewers == 0


def test_a_client_sending_its_request_slowly_is_cut_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge_sdk.web import server

    monkeypatch.setattr(server, "_REQUEST_DEADLINE_S", 1.0)
    with WebSink(bind="127.0.0.1:0") as s:
        conn = socket.create_connection((s.address.host, s.address.port), timeout=10)
        started = time.monotonic()
        closed_after = None
        try:
            for byte in b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"a" * 40:
                conn.sendall(bytes([byte]))  # each byte well within the per-read timeout
                time.sleep(0.1)
        except OSError:
            closed_after = time.monotonic() - started
        finally:
            conn.close()
        assert closed_after is not None and closed_after < 3.0


def test_slow_clients_from_one_address_leave_the_others_served() -> None:
    from edge_sdk.web.server import _SENDING_PER_CLIENT

    with WebSink(bind="127.0.0.1:0") as s:
        # 127.0.0.2 is this machine too (all of 127/8 is loopback): another client address.
        slow = [socket.create_connection((s.address.host, s.address.port), timeout=10,
                                         source_address=("127.0.0.2", 0))
                for _ in range(_SENDING_PER_CLIENT)]
        try:
            for conn in slow:
                conn.sendall(b"GET /healthz HTT")
            wait_until(lambda: raw_request(s, b"GET /healthz HTTP/1.0\r\n\r\n", "127.0.0.2")
                       .startswith(b"HTTP/1.0 503"), timeout=5)
            assert get(s.url + "healthz")[0] == 200  # another address is still served
        finally:
            for conn in slow:
                conn.close()
        wait_until(lambda: raw_request(s, b"GET /healthz HTTP/1.0\r\n\r\n", "127.0.0.2")
                   .startswith(b"HTTP/1.0 200"), timeout=5)


def test_port_in_use_is_one_line_sink_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as next_taken:  # the port the hint would name next is taken too
            try:
                next_taken.bind(("127.0.0.1", port + 1))
            except OSError:
                pass
            else:
                next_taken.listen()
            with pytest.raises(SinkError, match=r"already in use.*choose another port") as info:
                WebSink(bind=f"127.0.0.1:{port}")
    assert "\n" not in str(info.value)
    hint = re.search(r"e\.g\. 127\.0\.0\.1:(\d+)$", str(info.value))
    assert hint is not None and int(hint.group(1)) > port + 1, info.value


def test_created_through_the_registry() -> None:
    with registry.create("sinks", "web", bind="127.0.0.1:0") as s:
        assert isinstance(s, WebSink) and s.address.port > 0
    with pytest.raises(ConfigError, match="accepted: bind, token, token_file, insecure"):
        registry.create("sinks", "web", port=8080)


# -- streams -----------------------------------------------------------------------------------

def test_prediction_json_and_event_stream(sink: WebSink) -> None:
    assert get(sink.url + "api/prediction")[0] == 503
    conn = http.client.HTTPConnection(sink.address.host, sink.address.port, timeout=10)
    conn.request("GET", "/api/events")
    events = conn.getresponse()
    assert events.headers["Content-Type"].startswith("text/event-stream")
    wait_until(lambda: sink.predictions.readers == 1)
    for i in range(3):
        sink.publish(prediction(i), None)
        seen: dict[str, Any] = {}
        while "data" not in seen:
            line = events.readline().decode().rstrip("\n")
            key, _, value = line.partition(": ")
            if key in ("event", "data"):
                seen[key] = value
        assert seen["event"] == "prediction"
        data = json.loads(seen["data"])
        assert data["frame"] == i and data["top"][0]["label"] == "tench"
        assert set(data["rates"]) >= {"fps"}
    status, body, _ = get(sink.url + "api/prediction")
    latest = json.loads(body)
    assert status == 200 and latest["frame"] == 2
    assert Prediction.from_dict(latest).top == prediction(2).top
    conn.close()


def test_frames_encoded_only_while_watched_once_for_all_viewers(
    sink: WebSink, picture: np.ndarray
) -> None:
    for i in range(5):
        sink.publish(prediction(i), frame(picture, i))
    assert sink._jpeg_frames == 0  # nobody watching: no JPEG work at all

    viewers = [MjpegViewer(sink) for _ in range(3)]
    wait_until(lambda: sink.viewers == 3)
    for i in range(5, 15):
        sink.publish(prediction(i), frame(picture, i))
        wait_until(lambda: all(len(v.jpegs) >= 1 for v in viewers))
    # Ten frames published, ten encoded: three viewers share each JPEG.
    assert sink._jpeg_frames == 10
    for viewer in viewers:
        image = cv2.imdecode(np.frombuffer(viewer.jpegs[-1], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape == (480, 640, 3)  # under max_width: not scaled
        viewer.close()
    wait_until(lambda: sink.viewers == 0)
    for i in range(15, 20):
        sink.publish(prediction(i), frame(picture, i))
    assert sink._jpeg_frames == 10
    assert sink.jpegs.get()[1] is None  # the last JPEG is not kept for the next viewer


def test_slow_viewer_never_blocks_the_sink() -> None:
    # Noise does not compress: each JPEG is ~0.7 MB, so a few fill a socket's buffers (4 MB).
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    s = WebSink(bind="127.0.0.1:0", stream_fps=0, quality=95)
    stuck = MjpegViewer(s, read=False)  # connected, never reads: its socket fills up
    fast = MjpegViewer(s)
    wait_until(lambda: s.viewers == 2)
    for i in range(20):
        s.publish(prediction(i), frame(noise, i))
    assert s._jpeg_frames == 20
    wait_until(lambda: len(fast.jpegs) > 0)
    s.publish(prediction(20, "last"), frame(noise, 20))
    wait_until(lambda: fast.jpegs[-1] == s.jpegs.get()[1])  # the fast one is up to date
    fast.close()
    started = time.monotonic()
    s.close()  # cuts the stuck viewer's blocked write instead of waiting for its timeout
    assert time.monotonic() - started < 1.5
    assert s.viewers == 0
    stuck.close()


def test_stream_fps_and_max_width(picture: np.ndarray) -> None:
    with WebSink(bind="127.0.0.1:0", stream_fps=5, max_width=320) as s:
        viewer = MjpegViewer(s)
        wait_until(lambda: s.viewers == 1)
        for i in range(20):  # 20 frames in ~0.2 s: at 5 fps only the first is due
            s.publish(prediction(i), frame(picture, i))
        assert 1 <= s._jpeg_frames <= 2
        wait_until(lambda: len(viewer.jpegs) >= 1)
        image = cv2.imdecode(np.frombuffer(viewer.jpegs[0], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape == (240, 320, 3)
        viewer.close()
        # The pipeline decodes frames no wider than the stream shows them.
        assert s.frame_width == 320


def test_close_ends_open_streams(picture: np.ndarray) -> None:
    s = WebSink(bind="127.0.0.1:0")
    viewer = MjpegViewer(s)
    wait_until(lambda: s.viewers == 1)
    s.publish(prediction(0), frame(picture, 0))
    started = time.monotonic()
    s.close()
    assert viewer.ended.wait(5)
    assert time.monotonic() - started < 3
    s.close()  # idempotent
    with pytest.raises(SinkError, match="closed; make a new WebSink"):  # not a silent loss
        s.publish(prediction(1), frame(picture, 1))
    with pytest.raises(OSError):
        socket.create_connection((s.address.host, s.address.port), timeout=1).close()


def test_too_many_streams_get_503(picture: np.ndarray) -> None:
    with WebSink(bind="127.0.0.1:0", max_streams=1) as s:
        viewer = MjpegViewer(s)
        wait_until(lambda: s.viewers == 1)
        assert get(s.url + "stream.mjpg")[0] == 503
        assert get(s.url + "api/prediction")[0] == 503  # no prediction yet; not a stream
        viewer.close()


def test_a_viewer_whose_network_vanished_frees_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The link to a viewer on another host goes down mid-stream (Wi-Fi lost: no FIN, no
    reset, no more ACKs) while the pipeline idles, so the stream sends only keep-alives,
    which never fill a send buffer. The kernel's limit on unacknowledged data ends it, and its
    slot serves the next viewer, instead of TCP retrying for about 15 minutes (measured with
    the limit off: still open after 147 s). The limits are shortened here, 30 s and 15 s in
    use."""
    from support.netns import RemoteHost
    from support.netns import missing as netns_missing

    reason = netns_missing()
    if reason is not None:
        pytest.skip(reason)
    import edge_sdk.web.server as server

    monkeypatch.setattr(server, "_UNACKNOWLEDGED_S", 2)
    monkeypatch.setattr(server, "_KEEPALIVE_S", 0.5)
    with RemoteHost() as remote, WebSink(bind=f"{remote.host_ip}:0", token=TOKEN, max_streams=1,
                                         stream_fps=0) as s:
        viewer = remote.popen([sys.executable, "-c", (
            "import socket\n"
            f"s = socket.create_connection(({remote.host_ip!r}, {s.address.port}))\n"
            f"s.sendall(b'GET /api/events?token={TOKEN} HTTP/1.0\\r\\n\\r\\n')\n"
            "while s.recv(4096): pass\n"
        )])
        try:
            events = f"{s.url}api/events?token={TOKEN}"
            wait_until(lambda: s.predictions.readers == 1)
            s.publish(prediction(1), None)
            assert get(events)[0] == 503  # the remote viewer holds the only slot
            remote.cut()
            cut = time.monotonic()
            wait_until(lambda: s.predictions.readers == 0, timeout=15)
            assert time.monotonic() - cut < 8
            with urllib.request.urlopen(events, timeout=10) as response:
                assert response.status == 200 and response.readline() == b"retry: 2000\n"
        finally:
            viewer.kill()
            viewer.wait(5)


def test_event_streams_are_renewed_so_a_frozen_viewer_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer that connected and then never read (a browser frozen on a host that stays
    online: its kernel keeps taking the events) loses its stream at the renewal, 300 s in use,
    and its slot serves the next viewer; a reading viewer gets the renew event, then the end."""
    import edge_sdk.web.server as server

    monkeypatch.setattr(server, "_EVENTS_RENEW_S", 0.5)
    with WebSink(bind="127.0.0.1:0", max_streams=1) as s:
        frozen = socket.create_connection((s.address.host, s.address.port), timeout=10)
        frozen.sendall(b"GET /api/events HTTP/1.0\r\n\r\n")
        wait_until(lambda: s.predictions.readers == 1)
        assert get(s.url + "api/events")[0] == 503
        wait_until(lambda: s.predictions.readers == 0, timeout=5)
        s.publish(prediction(1), None)
        status, body, _ = get(s.url + "api/events")  # read to its end: the renewal
        assert status == 200
        assert body.startswith(b"retry: 2000\n\nevent: prediction\ndata: {")
        assert body.endswith(b"\n\nretry: 100\nevent: renew\ndata: {}\n\n")
        frozen.close()


def test_a_flood_of_idle_connections_gets_503_not_threads() -> None:
    """Clients that connect and send nothing hold a thread each until the handler's timeout:
    past the cap the server answers 503 at once, and serves again once they leave."""
    from edge_sdk.web.server import _EXTRA_CONNECTIONS

    with WebSink(bind="127.0.0.1:0", max_streams=1) as s:
        idle = [socket.create_connection((s.address.host, s.address.port))
                for _ in range(1 + _EXTRA_CONNECTIONS)]
        try:
            wait_until(lambda: get(s.url + "healthz")[0] == 503, timeout=5)
            threads = threading.active_count()
            assert all(get(s.url + "healthz")[0] == 503 for _ in range(20))
            assert threading.active_count() <= threads + 1  # refused without a thread each
        finally:
            for conn in idle:
                conn.close()
        wait_until(lambda: get(s.url + "healthz")[0] == 200, timeout=5)


# -- metrics -------------------------------------------------------------------------------------

def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_parse_with_prometheus_parser(sink: WebSink) -> None:
    for i in range(4):
        sink.publish(prediction(i), None)
    status, body, headers = get(sink.url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    found = families(body.decode())
    assert found["edge_sdk_predictions"].samples[0].value == 4
    stage = found["edge_sdk_stage_seconds"]
    assert stage.type == "histogram"
    counts = {s.labels["stage"]: s.value for s in stage.samples if s.name.endswith("_count")}
    assert counts["inference"] == 4
    sums = {s.labels["stage"]: s.value for s in stage.samples if s.name.endswith("_sum")}
    assert sums["inference"] == pytest.approx(4 * 6.0 / 1e3)
    assert found["edge_sdk_web_viewers"].samples[0].value == 0


def test_metrics_from_an_attached_pipeline_with_mqtt_queue_gauge(sink: WebSink) -> None:
    class Attached:  # what attach() reads from a Pipeline: its Metrics (a real one)
        metrics = Metrics()

    Attached.metrics.register_gauge("mqtt_queue", lambda: 7)
    Attached.metrics.register_sink("web", lossless=False, queue_depth=lambda: 1)
    Attached.metrics.sink_dropped("web", 3)
    sink.attach(Attached)
    Attached.metrics.record_prediction(prediction(0).timings)
    sink.publish(prediction(0), None)
    found = families(get(sink.url + "metrics")[1].decode())
    assert found["edge_sdk_mqtt_queue"].samples[0].value == 7
    assert found["edge_sdk_predictions"].samples[0].value == 1  # the pipeline's count, once
    dropped = found["edge_sdk_sink_dropped"].samples
    assert [(s.labels["sink"], s.value) for s in dropped] == [("web", 3)]
    assert "fps_in" in json.loads(get(sink.url + "api/prediction")[1])["rates"]


def test_metrics_of_a_pipeline_with_the_real_mqtt_sink(tmp_path: Path, classifier: Any) -> None:
    """Web view and MQTT in one pipeline, a real broker: the MQTT sink's gauges and counts
    reach /metrics under their own names and types."""
    from support.mosquitto import Mosquitto

    from edge_sdk.pipeline import Pipeline
    from edge_sdk.sinks.mqtt import MqttSink

    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        mqtt = MqttSink(host=broker.host, port=broker.port, device_id="webtest", discovery=False)
        web = WebSink(bind="127.0.0.1:0")
        with Pipeline("test://?size=320x240&fps=30", classifier, [mqtt, web], max_frames=12,
                      iterate=False) as pipeline:
            pipeline.wait(20)
            wait_until(lambda: mqtt.published == 12)  # acknowledged by the broker
            found = families(get(web.url + "metrics")[1].decode())
        published = found["edge_sdk_mqtt_published"]
        assert published.type == "counter" and published.samples[0].name.endswith("_total")
        assert published.samples[0].value == mqtt.published == 12
        assert found["edge_sdk_mqtt_dropped"].type == "counter"
        assert found["edge_sdk_mqtt_queue_depth"].type == "gauge"
        assert found["edge_sdk_mqtt_connected"].samples[0].value == 1
    finally:
        broker.stop()


# -- end to end: pipeline on a real video, page in a real headless Chromium ----------------------

def decode_png(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.slow
def test_page_in_chromium_shows_live_video_and_latest_prediction(
    tmp_path: Path, classifier: Any
) -> None:
    from support.chromium import Chromium
    from support.media import make_video

    from edge_sdk.pipeline import Pipeline

    video = make_video(tmp_path / "clip.avi", size=(640, 480), frames=150, fps=30, photos=30)
    seen: dict[int, Prediction] = {}
    web = WebSink(bind="127.0.0.1:0", token=TOKEN)
    # Realtime pacing makes the 150 frames last 5 s; a few predictions a second keep the
    # page and the API on one prediction long enough to compare them.
    pipeline = Pipeline(str(video), classifier, [web], realtime=True, max_fps=6,
                        on_prediction=lambda p: seen.__setitem__(p.frame_index, p))
    pipeline.metrics.register_gauge("mqtt_queue", lambda: 0)  # as the MQTT sink does
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with pipeline, Chromium(width=1100, height=700) as browser:
        browser.navigate(web.url + "?token=" + TOKEN)
        browser.wait_for("document.getElementById('video').naturalWidth > 0")
        first_frame = int(browser.wait_for("document.body.dataset.frame"))
        first = decode_png(browser.screenshot("#video"))
        browser.wait_for(f"Number(document.body.dataset.frame) >= {first_frame + 2}")
        second = decode_png(browser.screenshot("#video"))
        assert web.viewers == 1
        for shot in (first, second):
            assert shot.shape[0] > 100 and shot.std() > 20  # a picture, not a blank box
        assert np.abs(first.astype(np.int16) - second).mean() > 5  # and it moves

        page_state = (
            "({frame: Number(document.body.dataset.frame),"
            " names: [...document.querySelectorAll('#top .name')].map(e => e.textContent),"
            " scores: [...document.querySelectorAll('#top .score')].map(e => e.textContent),"
            " fps: document.getElementById('fps').textContent})"
        )
        matched = None
        for _ in range(100):  # bounded: predictions change ~6 times a second
            before = json.loads(get(web.url + "api/prediction", auth)[1])
            shown = browser.evaluate(page_state)
            after = json.loads(get(web.url + "api/prediction", auth)[1])
            if before["frame"] == after["frame"] == shown["frame"]:
                matched = before, shown
                break
            time.sleep(0.02)
        assert matched is not None, "the page never showed the latest prediction"
        latest, shown = matched
        assert shown["names"] == [t["label"] for t in latest["top"]]
        assert shown["scores"] == [f"{100 * t['score']:.1f}%" for t in latest["top"]]
        assert float(shown["fps"]) > 0
        # What the page showed is what the classifier said for that very frame.
        assert shown["names"] == [lb.name for lb in seen[shown["frame"]].top]

        found = families(get(web.url + "metrics", auth)[1].decode())
        counts = {s.labels["stage"]: s.value
                  for s in found["edge_sdk_stage_seconds"].samples if s.name.endswith("_count")}
        assert counts["inference"] >= 2
        assert found["edge_sdk_mqtt_queue"].samples[0].value == 0
        assert found["edge_sdk_web_viewers"].samples[0].value == 1
        assert found["edge_sdk_web_jpeg_frames"].samples[0].value >= 2


class Publisher:
    """Publishes a numbered prediction and `picture` to a sink ten times a second, in a thread."""

    def __init__(self, sink: WebSink, picture: np.ndarray, first: int = 0) -> None:
        self.sink, self.picture, self.next = sink, picture, first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.sink.publish(prediction(self.next), frame(self.picture, self.next))
            self.next += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


PAGE_STATUS = "document.getElementById('status').textContent"


@pytest.mark.slow
def test_page_names_the_file_of_an_image_from_a_watched_folder(
    tmp_path: Path, classifier: Any, photos: Path
) -> None:
    from support.chromium import Chromium

    from edge_sdk.pipeline import Pipeline

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    web = WebSink(bind="127.0.0.1:0", token=TOKEN)
    pipeline = Pipeline(str(inbox), classifier, [web], source_options={"watch": True})
    with pipeline, Chromium(width=1100, height=700) as browser:
        browser.navigate(web.url + "?token=" + TOKEN)
        browser.wait_for("document.getElementById('status').textContent === 'live'")
        assert browser.evaluate("document.getElementById('file').hidden") is True
        shutil.copy(photos / "coffee.png", tmp_path / "espresso shot.png")
        (tmp_path / "espresso shot.png").rename(inbox / "espresso shot.png")
        browser.wait_for("document.getElementById('file').textContent === 'espresso shot.png'")
        assert browser.evaluate("document.getElementById('file').hidden") is False
        assert browser.evaluate("document.getElementById('file').title") == str(inbox / "espresso shot.png")


@pytest.mark.slow
def test_page_stays_live_across_the_renewals_of_its_event_stream(
    picture: np.ndarray, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the page's event stream every 300 s (0.4 s here): the page reconnects
    without showing "reconnecting" or restarting its video, and its labels keep coming."""
    from support.chromium import Chromium

    import edge_sdk.web.server as server

    monkeypatch.setattr(server, "_EVENTS_RENEW_S", 0.4)
    caplog.set_level(logging.DEBUG, logger="edge_sdk.web.server")
    with WebSink(bind="127.0.0.1:0") as web, Chromium(width=900, height=600) as browser:
        publisher = Publisher(web, picture)
        try:
            browser.navigate(web.url)
            browser.wait_for(f"{PAGE_STATUS} === 'live' && document.body.classList.contains('playing')")
            browser.evaluate(
                "window.notLive = 0; window.videoRestarts = 0;"
                "new MutationObserver(() => { if (document.getElementById('status').textContent"
                " !== 'live') window.notLive++; }).observe(document.getElementById('status'),"
                " {childList: true, characterData: true, subtree: true});"
                "new MutationObserver(() => window.videoRestarts++).observe("
                "document.getElementById('video'), {attributes: true, attributeFilter: ['src']});"
            )
            seen = int(browser.evaluate("Number(document.body.dataset.frame)"))
            opened = caplog.text.count("GET /api/events 200")
            wait_until(lambda: caplog.text.count("GET /api/events 200") >= opened + 4, timeout=20)
            browser.wait_for(f"Number(document.body.dataset.frame) > {publisher.next - 1} - 3")
            assert int(browser.evaluate("Number(document.body.dataset.frame)")) > seen
            assert browser.evaluate("window.notLive") == 0
            assert browser.evaluate("window.videoRestarts") == 0
            assert browser.evaluate("document.body.classList.contains('playing')") is True
        finally:
            publisher.stop()


def test_page_recovers_its_video_and_labels_after_the_server_restarts(picture: np.ndarray) -> None:
    from support.chromium import Chromium

    port = free_port()
    first = WebSink(bind=f"127.0.0.1:{port}")
    publisher = Publisher(first, picture)
    with Chromium(width=900, height=600) as browser:
        try:
            browser.navigate(first.url)
            browser.wait_for("document.body.classList.contains('playing')")
            browser.wait_for("Number(document.body.dataset.frame) > 0")
        finally:
            publisher.stop()
            first.close()
        browser.wait_for(f"{PAGE_STATUS} === 'reconnecting'")
        assert not browser.evaluate("document.body.classList.contains('playing')")  # not a live frame
        # The server comes back on the same port, with frames the page has not seen.
        with WebSink(bind=f"127.0.0.1:{port}") as second:
            publisher = Publisher(second, 255 - picture, first=1000)
            try:
                browser.wait_for(f"{PAGE_STATUS} === 'live'")
                browser.wait_for("Number(document.body.dataset.frame) >= 1000")
                wait_until(lambda: second.viewers == 1)  # the video reconnected by itself
                browser.wait_for("document.body.classList.contains('playing')")
            finally:
                publisher.stop()


@pytest.mark.slow
def test_page_retries_after_its_streams_were_refused_with_503(picture: np.ndarray) -> None:
    from support.chromium import Chromium

    with WebSink(bind="127.0.0.1:0", max_streams=2) as s, Chromium(width=900, height=600) as browser:
        publisher = Publisher(s, picture)
        taken = [MjpegViewer(s), MjpegViewer(s)]
        try:
            browser.navigate(s.url)
            # Both of the page's streams got 503; EventSource gives up for good on that.
            browser.wait_for(f"{PAGE_STATUS} === 'reconnecting'")
            for viewer in taken:
                viewer.close()
            browser.wait_for(f"{PAGE_STATUS} === 'live'", timeout=20)
            browser.wait_for("Number(document.body.dataset.frame) > 0")
            browser.wait_for("document.body.classList.contains('playing')", timeout=20)
        finally:
            publisher.stop()


# -- the command line: edge-classify --source VIDEO --web ADDR:PORT ------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_cli_web_option_end_to_end(tmp_path: Path, model_home: Path) -> None:
    from support.media import make_video

    exe = Path(sys.executable).with_name("edge-classify")
    video = make_video(tmp_path / "clip.avi", size=(320, 240), frames=300, photos=10)
    env = {**os.environ, "EDGE_SDK_HOME": str(model_home)}
    env.pop("DISPLAY", None)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    refused = subprocess.run(
        [str(exe), "--source", str(video), "--no-display", "--web", "0.0.0.0:0"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("Error: web: binding 0.0.0.0:0")
    assert "Traceback" not in refused.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(
        [str(exe), "--source", str(video), "--realtime", "--no-display", "--threads", "1",
         "--web", f"127.0.0.1:{port}", "--web-token-file", str(token_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status, body = 0, b""
        while status != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "no prediction served"
            try:
                status, body, _ = get(url + "api/prediction?token=" + TOKEN)
            except OSError:  # not listening yet
                status = 0
            time.sleep(0.05)
        latest = json.loads(body)
        assert latest["model"] == "squeezenet1.1" and len(latest["top"]) == 3
        assert get(url + "api/prediction")[0] == 401
        assert get(url + "healthz")[0] == 200
        found = families(get(url + "metrics", {"Authorization": f"Bearer {TOKEN}"})[1].decode())
        assert found["edge_sdk_predictions"].samples[0].value >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr and "sink web" in stderr
    assert f"web view at {url} (add ?token=TOKEN)" in stderr  # without -v too
