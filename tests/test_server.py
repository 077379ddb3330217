"""The websocket service: a real server on port 0 with real clients (StreamClient and raw websockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _serving import SHORT_ENDPOINT, exchange, finals, offline, run, running
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamasr.service import protocol, worker
from streamasr.engine.audio import load_audio, resample
from streamasr.client import ServerError, StreamClient
from streamasr.service.protocol import Start
from streamasr.results import Result
from streamasr.service.server import ServerConfig, StreamServer
from streamasr.engine.stream import Recognizer, finish, flush_segment, step


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    return load_audio(speech_wav)


def _wait_for_url(proc: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    """Read the server's stderr until the line announcing its URL (a ``pattern`` match)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(pattern, line)
        if found:
            return found
    pytest.fail("server did not start")


async def stream_all(url: str, audio: np.ndarray, start: Start, chunk: float = 0.1) -> list[Result]:
    async with StreamClient(url, start) as client:
        return [r async for r in client.stream(audio, chunk)]


@pytest.mark.parametrize("rate, encoding, chunk", [(16000, "pcm_f32le", 0.1), (16000, "pcm_s16le", 0.37),
                                                   (44100, "pcm_f32le", 0.02), (8000, "pcm_s16le", 1.0)])

def test_file_through_server_equals_offline(tiny_recognizer: Recognizer, speech: np.ndarray, rate: int,
                                            encoding: protocol.Encoding, chunk: float) -> None:
    audio = resample(speech, 16000, rate)
    # The reference sees exactly the samples the wire carries (int16 quantisation included).
    sent = protocol.decode_audio(protocol.encode_audio(audio, encoding), encoding)
    expected = offline(tiny_recognizer, sent, rate, SHORT_ENDPOINT)
    start = Start(sample_rate=rate, encoding=encoding, endpoint=SHORT_ENDPOINT)

    async def main() -> list[Result]:
        async with running(tiny_recognizer) as server:
            return await stream_all(server.url, audio, start, chunk)

    got = finals(run(main()))
    assert len(expected) >= 3 and got == expected


def test_partials_arrive_before_the_audio_ends_and_are_rate_limited(tiny_recognizer: Recognizer,
                                                                    speech: np.ndarray) -> None:
    interval = 0.15

    async def main() -> tuple[list[tuple[float, Result]], float]:
        async with running(tiny_recognizer, partial_interval_ms=interval * 1000) as server:
            async with StreamClient(server.url, Start(encoding="pcm_f32le")) as client:
                loop = asyncio.get_running_loop()
                received: list[tuple[float, Result]] = []

                async def receive() -> None:
                    async for result in client.results():
                        received.append((loop.time(), result))

                receiver = asyncio.create_task(receive())
                for offset in range(0, len(speech), 800):  # 50 ms chunks at twice real time
                    await client.send_audio(speech[offset: offset + 800])
                    await asyncio.sleep(0.025)
                last_sent = loop.time()
                await client.stop()
                await receiver
                return received, last_sent

    received, last_sent = run(main())
    partials = [(t, r) for t, r in received if not r.is_final]
    assert partials and partials[0][0] < last_sent
    for (t0, a), (t1, b) in zip(partials, partials[1:]):
        assert (a.segment, a.text) != (b.segment, b.text)  # only changes are sent
        assert t1 - t0 > interval * 0.5  # at most one per interval (client clock: allow for jitter)


def test_many_streams_at_once_stay_independent(tiny_recognizer: Recognizer, speech: np.ndarray,
                                               real_speech_flac: Path) -> None:
    rng = np.random.default_rng(0)
    sources = [(speech, 16000), (load_audio(real_speech_flac), 16000), (resample(speech, 16000, 22050), 22050),
               ((rng.standard_normal(40000) * 0.05).astype(np.float32), 16000), (speech[::-1].copy(), 16000),
               (resample(load_audio(real_speech_flac), 16000, 48000), 48000)]
    expected = [offline(tiny_recognizer, a, r, SHORT_ENDPOINT) for a, r in sources]

    async def main() -> tuple[list[list[Result]], str]:
        async with running(tiny_recognizer) as server:
            jobs = [stream_all(server.url, a, Start(sample_rate=r, encoding="pcm_f32le", endpoint=SHORT_ENDPOINT),
                               chunk=0.05 + 0.01 * i) for i, (a, r) in enumerate(sources)]
            results = await asyncio.gather(*jobs)
            return list(results), server.metrics.render(0, server.worker)

    results, metrics = run(main())
    for got, want in zip(results, expected):
        assert finals(got) == want
    calls = float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("streamasr_batches_total")))
    steps = float(next(line.split()[1] for line in metrics.splitlines()
                       if line.startswith("streamasr_batch_streams_total")))
    assert steps > calls  # streams really shared model calls


def test_flush_returns_a_final_at_once(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    half = len(speech) // 2
    state = tiny_recognizer.initial_state(16000)
    state, r1 = step(tiny_recognizer, state, speech[:half])
    state, r2 = flush_segment(tiny_recognizer, state)
    state, r3 = step(tiny_recognizer, state, speech[half:])
    state, r4 = finish(tiny_recognizer, state)
    expected = finals(r1 + r2 + r3 + r4)

    async def main() -> tuple[list[Result], list[Result]]:
        async with running(tiny_recognizer) as server:
            async with StreamClient(server.url, Start(encoding="pcm_f32le", partials=False)) as client:
                await client.send_audio(speech[:half])
                await client.flush()
                first = await anext(client.results())
                await client.send_audio(speech[half:])
                await client.stop()
                return [first], [r async for r in client.results()]

    first, rest = run(main())
    assert first[0].is_final and first + rest == expected


def test_partials_and_words_can_be_switched_off(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> list[Result]:
        async with running(tiny_recognizer) as server:
            return await stream_all(server.url, speech, Start(encoding="pcm_f32le", partials=False, words=False))

    results = run(main())
    assert results and all(r.is_final and r.words == () for r in results)
    assert [r.text for r in results] == [r.text for r in offline(tiny_recognizer, speech)]


def start_frame(**fields: object) -> str:
    return json.dumps({"type": "start", **fields})


F32 = start_frame(encoding="pcm_f32le")
BAD_CASES: dict[str, tuple[list[str | bytes], str, int]] = {
    "malformed_json": (["{not json"], "malformed_json", 1007),
    "not_an_object": (["[1, 2, 3]"], "malformed_json", 1007),
    "unknown_type": (['{"type": "hello"}'], "unknown_type", 1008),
    "audio_before_start": ([b"\x00\x00" * 100], "not_started", 1008),
    "stop_before_start": (['{"type": "stop"}'], "not_started", 1008),
    "odd_bytes": ([start_frame(), b"\x00" * 101], "bad_audio", 1007),
    "odd_bytes_f32": ([F32, b"\x00" * 6], "bad_audio", 1007),
    "nan": ([F32, np.array([0.1, np.nan], "<f4").tobytes()], "bad_audio", 1007),
    "inf": ([F32, np.array([np.inf] * 4, "<f4").tobytes()], "bad_audio", 1007),
    "wrong_field_type": ([start_frame(sample_rate="16000")], "bad_field", 1007),
    "bad_endpoint": ([start_frame(endpoint={"silence_after_speech": -1})], "bad_field", 1007),
    "nan_in_json": (['{"type": "start", "sample_rate": NaN}'], "malformed_json", 1007),
    "grammar_on_a_greedy_server": ([start_frame(grammar=["yes", "no"])], "bad_field", 1007),
    "second_start": ([F32, b"\x00" * 400, F32], "already_started", 1008),
    "unknown_type_after_start": ([F32, '{"type": "pause"}'], "unknown_type", 1008),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_gets_typed_error_and_close_code_while_others_are_served(
        tiny_recognizer: Recognizer, speech: np.ndarray, caplog: pytest.LogCaptureFixture, case: str) -> None:
    frames, code, close = BAD_CASES[case]
    expected = offline(tiny_recognizer, speech)
    caplog.set_level(logging.INFO, "streamasr")

    async def main() -> tuple[list[dict[str, object]], int | None, list[Result], int]:
        async with running(tiny_recognizer) as server:
            async with StreamClient(server.url, Start(encoding="pcm_f32le")) as good:
                await good.send_audio(speech[:30000])
                messages, close_code = await exchange(server.url, frames)
                good_results = [r async for r in good.stream(speech[30000:])]
            await asyncio.sleep(0.05)
            return messages, close_code, good_results, len(server.sessions)

    messages, close_code, good_results, left = run(main())
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == code and messages[-1]["message"]
    assert close_code == close
    assert finals(good_results) == expected  # the other stream never noticed
    assert left == 0  # every state freed
    disconnects = [r for r in caplog.records if r.name == "streamasr.service.session" and "disconnected" in r.message]
    assert len(disconnects) == 2 and sum(code in r.message for r in disconnects) == 1  # logged once


def test_idle_client_is_closed_and_vanished_client_is_freed(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> tuple[list[dict[str, object]], int | None, str, int]:
        async with running(tiny_recognizer, idle_timeout=0.3) as server:
            stalled = exchange(server.url, [F32, speech[:8000].tobytes()], wait=5)
            messages, close_code = await stalled
            ws = await connect(server.url)
            await ws.send(F32)
            await ws.recv()
            await ws.send(speech[:16000].tobytes())
            await asyncio.sleep(0.05)
            ws.transport.abort()  # the client vanishes mid-stream
            for _ in range(100):
                if not server.sessions:
                    break
                await asyncio.sleep(0.02)
            return messages, close_code, server.metrics.render(0, server.worker), len(server.sessions)

    messages, close_code, metrics, left = run(main())
    assert messages[-1]["code"] == "idle_timeout" and close_code == 1008
    assert left == 0
    assert 'streamasr_errors_total{kind="client_gone"} 1' in metrics
    assert 'streamasr_errors_total{kind="idle_timeout"} 1' in metrics


def test_slots_cannot_be_held_without_real_audio(tiny_recognizer: Recognizer, speech: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 33, finding 6: no 'start' in time, a trickle of audio, a stream open too long, and
    more streams from one address than allowed each end the stream (or refuse it), counted."""
    from streamasr.service import session

    monkeypatch.setattr(session, "MIN_RATE_AFTER", 0.3)  # the rate counts after 0.3 s instead of a minute

    async def trickle(url: str, every: float, times: int) -> tuple[list[dict[str, Any]], int | None]:
        messages: list[dict[str, Any]] = []
        async with connect(url) as ws:
            await ws.send(F32)
            messages.append(json.loads(await ws.recv()))
            with contextlib.suppress(ConnectionClosed):
                for _ in range(times):
                    await ws.send(speech[:160].tobytes())  # 10 ms of audio
                    await asyncio.sleep(every)
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:  # what came before and after the close
                    messages.append(json.loads(message))
            await ws.wait_closed()
            return messages, ws.close_code

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running(tiny_recognizer, start_timeout=0.3, min_audio_rate=0.5) as server:
            ws = await connect(server.url)  # connects and says nothing
            with contextlib.suppress(ConnectionClosed):
                out["silent"] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.wait_closed()
            out["silent_close"] = ws.close_code
            out["trickle"] = await trickle(server.url, 0.1, 20)
            out["metrics"] = server.metrics.render(0, server.worker)
        async with running(tiny_recognizer, max_stream_wall_seconds=1, min_audio_rate=0) as server:
            out["long"] = await trickle(server.url, 0.2, 15)
        async with running(tiny_recognizer, max_connections_per_address=2) as server:
            held = [await connect(server.url) for _ in range(2)]
            try:
                await connect(server.url)
                out["third"] = 101
            except InvalidStatus as e:
                out["third"] = e.response.status_code
            for ws in held:
                await ws.close()
            await asyncio.sleep(0.1)
            async with connect(server.url):  # a slot of its own again once one ended
                out["after"] = 101
            out["rejected"] = server.metrics.rejected["per_address"]
        return out

    got = run(main())
    assert got["silent"]["code"] == "start_timeout" and got["silent_close"] == 1008
    messages, code = got["trickle"]
    assert messages[-1]["code"] == "too_little_audio" and code == 1008
    assert 'streamasr_errors_total{kind="start_timeout"} 1' in got["metrics"]
    assert 'streamasr_errors_total{kind="too_little_audio"} 1' in got["metrics"]
    messages, code = got["long"]
    assert messages[-1]["code"] == "stream_too_long" and "open for over 1 s" in messages[-1]["message"] and code == 1008
    assert got["third"] == 429 and got["after"] == 101 and got["rejected"] == 1


def test_oversize_frame_closes_1009(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> tuple[int | None, list[Result], int]:
        async with running(tiny_recognizer, max_frame_bytes=4096) as server:
            _, close_code = await exchange(server.url, [F32, b"\x00" * 8192])
            good = await stream_all(server.url, speech, Start(encoding="pcm_f32le"), chunk=0.05)
            return close_code, good, server.metrics.errors["frame_too_big"]

    close_code, good, counted = run(main())
    assert close_code == 1009 and counted == 1
    assert finals(good) == offline(tiny_recognizer, speech)


def test_too_long_stream_gets_its_final_then_error(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> tuple[list[dict[str, object]], int | None]:
        async with running(tiny_recognizer, max_stream_seconds=2) as server:
            frames: list[str | bytes] = [F32] + [speech[i: i + 1600].tobytes() for i in range(0, len(speech), 1600)]
            return await exchange(server.url, frames)

    messages, close_code = run(main())
    kinds = [m["type"] for m in messages]
    assert "final" in kinds and kinds[-1] == "error" and messages[-1]["code"] == "stream_too_long"
    assert close_code == 1008


def test_internal_error_closes_1011_and_spares_the_batch(tiny_recognizer: Recognizer, speech: np.ndarray,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    real_step_many = worker.step_many

    def flaky(rec: Recognizer, states: list[Any], pcms: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
        if any(s.sample_rate == 8000 for s in states):
            raise RuntimeError("simulated bug")
        return real_step_many(rec, states, pcms, *args, **kwargs)

    monkeypatch.setattr(worker, "step_many", flaky)

    async def main() -> tuple[list[dict[str, object]], int | None, list[Result]]:
        async with running(tiny_recognizer) as server:
            bad = exchange(server.url, [start_frame(sample_rate=8000)] + [b"\x00\x01" * 800] * 20)
            good = stream_all(server.url, speech, Start(encoding="pcm_f32le"), chunk=0.05)
            (messages, close_code), results = await asyncio.gather(bad, good)
            return messages, close_code, results

    messages, close_code, results = run(main())
    assert messages[-1]["code"] == "internal" and close_code == 1011
    assert finals(results) == offline(tiny_recognizer, speech)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "streamasr.service.session"]
    assert len(errors) == 1 and errors[0].exc_info is not None


def test_token_required_when_configured(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> list[int | None | str]:
        outcomes: list[int | None | str] = []
        async with running(tiny_recognizer, token="s3cret") as server:
            for token in (None, "wrong"):
                with pytest.raises(ServerError) as info:
                    await StreamClient(server.url, token=token).connect()
                outcomes.append(info.value.status)
            async with StreamClient(server.url, Start(encoding="pcm_f32le"), token="s3cret") as client:
                outcomes.append(len(finals([r async for r in client.stream(speech)])))
            _, close_code = await exchange(server.url + "?token=s3cret", ['{"type": "start"}', '{"type": "stop"}'])
            outcomes.append(close_code)
            outcomes.append(server.metrics.rejected["unauthorized"])
        return outcomes

    assert run(main()) == [401, 401, 1, 1000, 2]


async def handshake(port: int, headers: str) -> bytes:
    """A websocket handshake written by hand (``headers``: the Host and any others, each ending in CRLF);
    returns the start of the server's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET {protocol.PATH} HTTP/1.1\r\n{headers}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    answer = await reader.read(4096)
    writer.close()
    return answer


def test_browser_origins_other_than_the_server_s_own_are_refused(tiny_recognizer: Recognizer) -> None:
    async def status(url: str, origin: str | None) -> int:
        try:
            async with connect(url, origin=origin) as ws:
                await ws.send('{"type": "start"}')
                return 101
        except InvalidStatus as e:
            return e.response.status_code

    async def main() -> tuple[list[int], bytes]:
        async with running(tiny_recognizer, allowed_origins="https://app.example") as server:
            own = "http://" + server.url.split("/")[2]  # the page the server itself serves
            got = [await status(server.url, o) for o in
                   (None, own, f"http://localhost:{server.port}", "https://app.example", "https://evil.example",
                    "null", f"http://127.0.0.1:{server.port + 1}")]
            # A page on evil.example whose name now points at 127.0.0.1: Host and Origin both say so.
            rebound = await handshake(server.port, f"Host: evil.example:{server.port}\r\n"
                                                   f"Origin: http://evil.example:{server.port}\r\n")
            return got + [server.metrics.rejected["origin"]], rebound

    codes, answer = run(main())
    assert codes == [101, 101, 101, 101, 403, 403, 403, 4]  # the rebound page counted too
    assert answer.startswith(b"HTTP/1.1 403")  # DNS rebinding: the Host header does not make a page the server's own


def test_a_handshake_with_repeated_headers_gets_400(tiny_recognizer: Recognizer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Two Authorization, Origin or Host headers: a plain 400 naming them, no traceback (issue 33)."""
    async def main() -> tuple[list[bytes], int]:
        async with running(tiny_recognizer, token="T") as server:
            answers = [await handshake(server.port, f"Host: 127.0.0.1:{server.port}\r\n" + extra) for extra in (
                "Authorization: Bearer T\r\nAuthorization: Bearer X\r\n",
                "Authorization: Bearer T\r\nOrigin: http://a.example\r\nOrigin: http://b.example\r\n",
                "Authorization: Bearer T\r\nHost: evil.example\r\n")]
            return answers, server.metrics.rejected["bad_request"]

    caplog.set_level(logging.INFO, "websockets")
    answers, rejected = run(main())
    for answer, name in zip(answers, ("Authorization", "Origin", "Host")):
        assert answer.startswith(b"HTTP/1.1 400") and f"repeats the header(s) {name}".encode() in answer
    assert rejected == 3 and not [r for r in caplog.records if r.exc_info]


def test_connections_beyond_the_limit_get_503(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> tuple[int | None, int]:
        async with running(tiny_recognizer, max_connections=2) as server:
            async with StreamClient(server.url), StreamClient(server.url):
                with pytest.raises(ServerError) as info:
                    await StreamClient(server.url).connect()
            await asyncio.sleep(0.05)  # the two slots are given back
            async with StreamClient(server.url, Start(encoding="pcm_f32le")) as client:
                got = len(finals([r async for r in client.stream(speech)]))
            return info.value.status, got

    assert run(main()) == (503, 1)


def test_shutdown_delivers_finals_to_streams_in_flight(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    cut = [20000, 40000, len(speech)]
    expected = [offline(tiny_recognizer, speech[:n]) for n in cut]

    async def one(client: StreamClient, n: int) -> tuple[list[Result], int | None]:
        await client.send_audio(speech[:n])
        results = [r async for r in client.results()]
        await client.ws.wait_closed()
        return results, client.ws.close_code

    async def main() -> tuple[list[tuple[list[Result], int | None]], int | None, str]:
        server = StreamServer(tiny_recognizer, ServerConfig(port=0))
        await server.start()
        url = server.url
        clients = [StreamClient(url, Start(encoding="pcm_f32le")) for _ in cut]
        for c in clients:
            await c.connect()
        tasks = [asyncio.create_task(one(c, n)) for c, n in zip(clients, cut)]
        silent = await connect(url)  # connected, but has not sent 'start' yet
        while sum(s.received for s in server.sessions) < sum(cut):  # all audio arrived; nobody sends stop
            await asyncio.sleep(0.01)
        await server.shutdown()
        outcomes = await asyncio.gather(*tasks)
        await silent.wait_closed()
        with pytest.raises(ServerError) as refused:
            await StreamClient(url).connect()
        return list(outcomes), silent.close_code, refused.value.code

    outcomes, silent_code, refused = run(main())
    for (results, close_code), want in zip(outcomes, expected):
        assert finals(results) == want and close_code == 1001
    assert silent_code == 1001
    assert refused == "connect_failed"  # nothing listens any more


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_http_routes(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def main() -> dict[str, tuple[int, str, str]]:
        async with running(tiny_recognizer) as server:
            await stream_all(server.url, speech, Start(encoding="pcm_f32le"))
            await exchange(server.url, ["{oops"])
            paths = ["/healthz", "/metrics", "/", "/worklet.js", "/nope", "/v1/stream"]
            return {p: await asyncio.to_thread(get, server.port, p) for p in paths}

    pages = run(main())
    assert pages["/healthz"][:1] == (200,) and pages["/healthz"][2] == "ok\n"
    status, ctype, metrics = pages["/metrics"]
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    for line in ("streamasr_active_streams 0", "streamasr_streams_total 2", "streamasr_queue_depth 0",
                 'streamasr_errors_total{kind="malformed_json"} 1'):
        assert line in metrics.splitlines()
    audio_line = next(x for x in metrics.splitlines() if x.startswith("streamasr_audio_seconds_total"))
    assert float(audio_line.split()[1]) == pytest.approx(len(speech) / 16000)
    assert "streamasr_real_time_factor" in metrics
    assert pages["/"][0] == 200 and pages["/"][1].startswith("text/html") and "AudioWorkletNode" in pages["/"][2]
    assert pages["/worklet.js"][1].startswith("text/javascript") and "registerProcessor" in pages["/worklet.js"][2]
    assert pages["/nope"][0] == 404
    assert pages["/v1/stream"][0] == 426  # a plain GET on the stream path is not a websocket upgrade


def request(port: int, path: str, method: str = "GET", token: str | None = None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_each_route_answers_get_only_and_metrics_need_the_token(tiny_recognizer: Recognizer) -> None:
    """Issue 33, finding 8: other methods get 405; with a token set, /metrics is for its holders
    while /healthz (probes) and the page (no secrets; its websocket needs the token) stay open."""
    async def main() -> dict[tuple[str, str, str | None], tuple[int, dict[str, str]]]:
        async with running(tiny_recognizer, token="T") as server:
            asks = [("/healthz", m, None) for m in ("GET", "POST", "PUT", "DELETE", "HEAD")]
            asks += [("/metrics", "GET", None), ("/metrics", "GET", "wrong"), ("/metrics", "GET", "T"),
                     ("/", "GET", None), ("/metrics", "POST", "T")]
            return {a: await asyncio.to_thread(request, server.port, *a) for a in asks}

    got = run(main())
    assert got[("/healthz", "GET", None)][0] == 200
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        status, headers = got[("/healthz", method, None)]
        assert status == 405 and headers["Allow"] == "GET"
    assert [got[("/metrics", "GET", t)][0] for t in (None, "wrong", "T")] == [401, 401, 200]
    assert got[("/metrics", "GET", None)][1]["WWW-Authenticate"] == 'Bearer realm="streamasr"'
    assert got[("/", "GET", None)][0] == 200 and got[("/metrics", "POST", "T")][0] == 405


def test_config_errors_name_field_value_and_range() -> None:
    with pytest.raises(ValueError, match=r"ServerConfig.max_connections must be in \[1, 100000\], got 0"):
        ServerConfig(max_connections=0)
    with pytest.raises(ValueError, match=r"ServerConfig.idle_timeout must be in .*, got -1"):
        ServerConfig(idle_timeout=-1)


def test_sigterm_finishes_streams_then_exits(tiny_model_path: Path, tiny_recognizer: Recognizer,
                                             speech: np.ndarray) -> None:
    import signal
    import subprocess
    import sys

    with subprocess.Popen([sys.executable, "-m", "streamasr", "serve", "--model", str(tiny_model_path),
                           "--method", "greedy", "--port", "0"], stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).parent.parent) as proc:
        try:
            found = _wait_for_url(proc, r"serving (ws://\S+)")

            async def main() -> tuple[list[Result], int | None]:
                async with StreamClient(found.group(1), Start(encoding="pcm_f32le")) as client:
                    await client.send_audio(speech[:40000])
                    port = int(found.group(1).split(":")[2].split("/")[0])
                    while "streamasr_audio_seconds_total 2.5" not in (await asyncio.to_thread(get, port, "/metrics"))[2]:
                        await asyncio.sleep(0.02)  # the server has the audio
                    proc.send_signal(signal.SIGTERM)
                    results = [r async for r in client.results()]
                    await client.ws.wait_closed()
                    return results, client.ws.close_code

            results, close_code = run(main())
            assert finals(results) == offline(tiny_recognizer, speech[:40000]) and close_code == 1001
            assert proc.wait(20) == 0
            assert "disconnected: shutdown" in proc.stderr.read()
        finally:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_worker_processes_share_the_port(tiny_model_path: Path, tiny_recognizer: Recognizer,
                                         speech: np.ndarray, stop: str) -> None:
    """``--workers 2``: two server processes accept on one socket; SIGTERM ends both cleanly, and
    they also end when their parent is killed outright."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    with subprocess.Popen([sys.executable, "-m", "streamasr", "serve", "--model", str(tiny_model_path),
                           "--method", "greedy", "--port", "0", "--workers", "2"], stderr=subprocess.PIPE,
                          text=True, cwd=Path(__file__).parent.parent) as proc:
        children: list[psutil.Process] = []
        try:
            found = _wait_for_url(proc, r"serving (ws://\S+) with 2 worker processes")
            children = psutil.Process(proc.pid).children()
            assert len(children) == 2
            if stop == "SIGTERM":
                async def main() -> list[list[Result]]:
                    start = Start(encoding="pcm_f32le", endpoint=SHORT_ENDPOINT)
                    return list(await asyncio.gather(*(stream_all(found.group(1), speech, start, 0.25)
                                                       for _ in range(6))))

                expected = offline(tiny_recognizer, speech, endpoint=SHORT_ENDPOINT)
                assert all(finals(got) == expected for got in run(main()))
            proc.send_signal(getattr(signal, stop))
            assert proc.wait(30) == (0 if stop == "SIGTERM" else -signal.SIGKILL)
            deadline = time.monotonic() + 30
            while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
                assert time.monotonic() < deadline, "worker processes outlived their parent"
                time.sleep(0.1)
        finally:
            proc.kill()
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()


def test_beam_server_finals_equal_offline_and_carry_n_best(tiny_model_path: Path, tiny_lm_path: Path,
                                                           speech: np.ndarray) -> None:
    """A server decoding with the beam search and the LMs gives each final what the offline
    engine gives; a stream that asks for ``nbest`` gets its best texts as alternatives."""
    from streamasr.engine.beam import DecoderConfig

    rec = Recognizer.load(tiny_model_path, decoder=DecoderConfig(beam_size=16, lm=str(tiny_lm_path),
                                                                  insertion_bonus=2.0, word_weight=0.2))
    expected = offline(rec, speech, 16000, SHORT_ENDPOINT)

    hotwords = ("the number", ("two", 3.0))
    state, boosted = rec.initial_state(16000, SHORT_ENDPOINT, hotwords=list(hotwords)), []
    for i in range(0, len(speech), 1600):
        state, out = step(rec, state, speech[i:i + 1600])
        boosted += out
    boosted = finals(boosted + finish(rec, state)[1])

    async def main() -> tuple[list[Result], list[Result], list[Result], list[Result]]:
        async with running(rec) as server:
            plain, ranked, hot, menu = await asyncio.gather(*(
                stream_all(server.url, speech, Start(endpoint=SHORT_ENDPOINT, encoding="pcm_f32le", **extra))
                for extra in ({}, {"nbest": 3}, {"hotwords": hotwords}, {"grammar": ("to", "go")})))
            return plain, ranked, hot, menu

    plain, ranked, hot, menu = run(main())
    assert all(set(r.text.split()) <= {"to", "go"} for r in finals(menu)) and any(r.text for r in finals(menu))
    assert len(expected) >= 2 and finals(plain) == expected
    assert finals(hot) == boosted and boosted != expected  # the hotwords changed the text, as offline
    assert all(not r.alternatives for r in finals(plain))
    for got, want in zip(finals(ranked), expected, strict=True):
        texts = [a.text for a in got.alternatives]
        scores = [a.score for a in got.alternatives]
        assert got.text == want.text and texts[0] == want.text and len(set(texts)) == len(texts) <= 3
        assert scores[0] == 0.0 and scores == sorted(scores, reverse=True)
    assert any(len(r.alternatives) > 1 for r in finals(ranked))
