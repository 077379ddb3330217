"""The browser page in headless Chromium, with a WAV file as its microphone, driven over DevTools."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _serving import offline, run, threaded_server
from websockets.asyncio.client import ClientConnection, connect

from streamasr.service import protocol
from streamasr.engine.adapt import AdaptConfig
from streamasr.engine.audio import load_audio, resample
from streamasr.engine.stream import Recognizer, finish, step

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.requires_browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")]


@pytest.fixture()
def devtools_port(tmp_path: Path, speech_wav: Path) -> Iterator[int]:
    """Headless Chromium whose fake microphone plays ``speech_wav`` once; yields its DevTools port."""
    profile = tmp_path / "profile"
    args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--remote-debugging-port=0", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
            "--autoplay-policy=no-user-gesture-required", "about:blank"]
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 20
            while not (port_file.exists() and port_file.read_text().strip()):
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("chromium did not open its DevTools port")
                time.sleep(0.05)
            yield int(port_file.read_text().split()[0])
        finally:
            proc.kill()


class Page:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.ws.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return dict(reply["result"])

    async def js(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True, userGesture=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")


VIEW = """JSON.stringify({
  status: document.getElementById('status').textContent,
  partial: document.getElementById('partial').textContent,
  finals: [...document.querySelectorAll('#finals .text')].map(e => e.textContent),
  messages: window.streamasr.messages, closeCode: window.streamasr.closeCode})"""


async def drive(devtools: int, url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Open the page, press Start, watch it until a final shows, press Stop, wait for ``done``."""
    def targets() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json/list", timeout=5) as response:
            return list(json.load(response))

    page_target = next(t for t in await asyncio.to_thread(targets) if t["type"] == "page")
    async with connect(page_target["webSocketDebuggerUrl"], max_size=None) as ws:
        page = Page(ws)
        await page.call("Page.enable")
        await page.call("Page.navigate", url=url)
        while await page.js("document.readyState") != "complete" or not await page.js("!!window.streamasr"):
            await asyncio.sleep(0.05)
        await page.js("document.getElementById('start').click()")
        views: list[dict[str, Any]] = []
        while not views or not views[-1]["finals"]:  # poll the DOM as a viewer would see it
            await asyncio.sleep(0.1)
            views.append(json.loads(await page.js(VIEW)))
        await page.js("document.getElementById('stop').click()")
        while views[-1]["closeCode"] is None:
            await asyncio.sleep(0.1)
            views.append(json.loads(await page.js(VIEW)))
        return views, views[-1]


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The audio the server decodes from the page's frames, as it gets it."""
    audio: list[np.ndarray] = []
    decode = protocol.decode_audio

    def record(data: bytes, encoding: protocol.Encoding) -> np.ndarray:
        pcm = decode(data, encoding)
        audio.append(pcm)
        return pcm

    monkeypatch.setattr(protocol, "decode_audio", record)
    return audio


def test_browser_page_shows_live_partials_and_the_server_finals(
        tiny_recognizer: Recognizer, devtools_port: int, speech_wav: Path, received: list[np.ndarray]) -> None:
    with threaded_server(tiny_recognizer, token="page-token") as server:
        views, last = run(drive(devtools_port, f"http://127.0.0.1:{server.port}/?token=page-token"), timeout=45)

    messages = last["messages"]
    assert last["closeCode"] == 1000 and last["status"] == "done"
    assert any(v["status"].startswith("listening (model tiny") and "adapting" not in v["status"] for v in views)
    assert [m["type"] for m in messages][0] == "ready" and messages[-1]["type"] == "done"
    rate = messages[0]["sample_rate"]  # the AudioContext's own rate, resampled by the server
    # Partial text was on screen before any final.
    first_final = next(i for i, v in enumerate(views) if v["finals"])
    assert any(v["partial"] for v in views[:first_final])
    # The page shows exactly the finals the server sent ...
    sent = [m["text"] for m in messages if m["type"] == "final" and m["text"]]
    assert last["finals"] == sent and sent and last["partial"] == ""
    # ... which are the engine's finals for exactly the audio the page captured and sent.
    audio = np.concatenate(received)
    assert [r.text for r in offline(tiny_recognizer, audio, rate) if r.text] == sent
    # And that audio is the WAV file Chromium played as its microphone.
    speech = load_audio(speech_wav)
    heard = resample(audio, rate, 16000)
    size = len(heard) + len(speech)
    correlation = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(speech, size)), size)
    lag = int(np.argmax(correlation))
    lag = lag if lag < len(heard) else lag - size  # < 0: capture began after the file started
    a, b = (heard[lag:], speech) if lag >= 0 else (heard, speech[-lag:])
    # Compare the first second after alignment: Chromium's fake device loops the file and can drop
    # a buffer when the machine is busy, which shifts everything after it.
    n = min(len(a), len(b), 16000)
    similarity = np.corrcoef(a[:n], b[:n])[0, 1]
    assert len(heard) > 2 * 16000 and n == 16000, f"captured only {len(heard)} samples (16 kHz)"
    assert similarity > 0.95, f"captured audio is not the file (r={similarity:.2f}, lag={lag})"


def test_browser_page_says_when_the_stream_adapts_to_the_voice(tiny_recognizer: Recognizer,
                                                               devtools_port: int) -> None:
    with threaded_server(tiny_recognizer, adapt=AdaptConfig(lr=3e-3)) as server:
        views, last = run(drive(devtools_port, f"http://127.0.0.1:{server.port}/"), timeout=45)
    assert last["messages"][0]["type"] == "ready" and last["messages"][0]["adapt"] is True
    assert any(v["status"].endswith(", adapting to your voice)") for v in views)
    assert last["closeCode"] == 1000 and last["status"] == "done"


def test_browser_page_keeps_a_named_speakers_voice(tiny_recognizer: Recognizer, devtools_port: int,
                                                  tmp_path: Path) -> None:
    with threaded_server(tiny_recognizer, adapt=AdaptConfig(lr=3e-3), speakers=str(tmp_path)) as server:
        views, last = run(drive(devtools_port, f"http://127.0.0.1:{server.port}/?speaker=ana"), timeout=45)
    assert any(v["status"].endswith(", adapting to your voice (ana's profile))") for v in views)
    assert last["closeCode"] == 1000 and last["status"] == "done"
    assert (tmp_path / "ana.spk").is_file()  # kept when the page's stream stopped


def test_browser_page_sends_its_hotwords(tiny_model_path: Path, tiny_lm_path: Path, devtools_port: int,
                                         received: list[np.ndarray]) -> None:
    """The hotwords box (here from ?hotwords=) reaches a beam-search server, whose finals are the
    engine's for the audio the page sent with those hotwords."""
    from streamasr.engine.beam import DecoderConfig

    rec = Recognizer.load(tiny_model_path, decoder=DecoderConfig(beam_size=8, lm=str(tiny_lm_path),
                                                                  insertion_bonus=2.0, word_weight=0.2))
    with threaded_server(rec) as server:
        views, last = run(drive(devtools_port, f"http://127.0.0.1:{server.port}/?hotwords=two,%20go%20go"), timeout=60)
    assert last["closeCode"] == 1000 and last["status"] == "done"
    sent = [m["text"] for m in last["messages"] if m["type"] == "final" and m["text"]]
    rate = last["messages"][0]["sample_rate"]
    audio = np.concatenate(received)
    state, results = rec.initial_state(rate, hotwords=["two", "go go"]), []
    for i in range(0, len(audio), 1600):
        state, out = step(rec, state, audio[i:i + 1600])
        results += out
    results += finish(rec, state)[1]
    assert sent and [r.text for r in results if r.is_final and r.text] == sent
