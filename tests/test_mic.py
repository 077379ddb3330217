"""Live captions: injected audio sources (file, fake sounddevice), local and server modes, the CLI."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from _serving import finals, offline, run, running, threaded_server

from streamasr.client import mic
from streamasr.engine.audio import load_audio
from streamasr.cli import main as cli_main
from streamasr.errors import AudioError
from streamasr.service.protocol import Start
from streamasr.results import Result
from streamasr.engine.stream import Recognizer


class FakeSoundDevice(types.SimpleNamespace):
    """Just enough of sounddevice: one input device that plays ``audio`` from PortAudio's (a) thread."""

    class PortAudioError(Exception):
        pass

    def __init__(self, audio: np.ndarray | None, rate: int = 16000) -> None:
        super().__init__()
        self.audio, self.rate = audio, rate
        fake = self

        class InputStream:
            def __init__(self, *, callback: Callable[..., None], finished_callback: Callable[[], None],
                         blocksize: int, samplerate: int, **_: Any) -> None:
                assert samplerate == fake.rate
                self.callback, self.finished, self.block = callback, finished_callback, blocksize
                self.thread = threading.Thread(target=self.play)

            def play(self) -> None:
                assert fake.audio is not None
                status = types.SimpleNamespace(input_overflow=False)
                for offset in range(0, len(fake.audio), self.block):
                    block = fake.audio[offset: offset + self.block]
                    self.callback(block[:, None].copy(), len(block), None, status)
                self.finished()

            def __enter__(self) -> InputStream:
                self.thread.start()
                return self

            def __exit__(self, *exc: object) -> None:
                self.thread.join()

        self.InputStream = InputStream

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        devices = [{"name": "Fake Mic", "max_input_channels": 1 if self.audio is not None else 0,
                    "default_samplerate": float(self.rate)}]
        if kind == "input":
            if self.audio is None:
                raise self.PortAudioError("no default input device")
            return devices[0]
        return devices


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    return load_audio(speech_wav)


def collect() -> tuple[list[Result], Callable[[Result], None]]:
    results: list[Result] = []
    return results, results.append


def test_local_mode_with_a_file_as_microphone(tiny_recognizer: Recognizer, speech_wav: Path,
                                              speech: np.ndarray) -> None:
    results, on_result = collect()
    run(mic.run_local(mic.FileSource(speech_wav, realtime=False), tiny_recognizer, on_result))
    assert finals(results) == offline(tiny_recognizer, speech)
    assert any(not r.is_final for r in results)


def test_server_mode_with_a_file_as_microphone(tiny_recognizer: Recognizer, speech_wav: Path,
                                               speech: np.ndarray) -> None:
    results, on_result = collect()

    async def main() -> None:
        async with running(tiny_recognizer) as server:
            await mic.run_remote(mic.FileSource(speech_wav, realtime=False), server.url, Start(), on_result)

    run(main())
    assert finals(results) == offline(tiny_recognizer, speech)


def test_sounddevice_callback_path_delivers_every_sample(tiny_recognizer: Recognizer, speech: np.ndarray,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    audio = np.concatenate([speech, np.zeros(4410, np.float32)])
    fake = FakeSoundDevice(np.interp(np.arange(0, len(audio), 16000 / 44100), np.arange(len(audio)),
                                     audio).astype(np.float32), rate=44100)
    monkeypatch.setattr(mic, "load_sounddevice", lambda: fake)
    source = mic.MicSource()
    assert source.sample_rate == 44100  # the device's own rate; the engine resamples statefully
    results, on_result = collect()
    run(mic.run_local(source, tiny_recognizer, on_result))
    assert fake.audio is not None
    assert finals(results) == offline(tiny_recognizer, fake.audio, 44100)


def test_no_input_device_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mic, "load_sounddevice", lambda: FakeSoundDevice(None))
    with pytest.raises(AudioError, match="no audio input device found: connect a microphone"):
        mic.MicSource()


def test_missing_sounddevice_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(AudioError, match=r"pip install 'streamasr\[mic\]'"):
        mic.load_sounddevice()


def test_mic_command_lists_devices_and_reports_missing_ones(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(mic, "load_sounddevice", lambda: FakeSoundDevice(np.zeros(10, np.float32)))
    assert cli_main(["mic", "--list-devices"]) == 0
    assert capsys.readouterr().out == "  0  Fake Mic  (1 ch, 16000 Hz)\n"
    monkeypatch.setattr(mic, "load_sounddevice", lambda: FakeSoundDevice(None))
    assert cli_main(["mic"]) == 2
    assert "no audio input device found" in capsys.readouterr().err


def test_mic_command_local_and_through_a_server(tiny_recognizer: Recognizer, tiny_model_path: Path,
                                               speech: np.ndarray, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.wav"  # 1.2 s: the file plays at real-time pace, like a microphone
    sf.write(clip, speech[:19200], 16000, subtype="FLOAT")
    expected = [r.text for r in offline(tiny_recognizer, speech[:19200])]
    assert expected
    # The same decoder as tiny_recognizer's (greedy), so the texts must be equal.
    assert cli_main(["mic", "--from-file", str(clip), "--model", str(tiny_model_path), "--method", "greedy"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    with threaded_server(tiny_recognizer) as server:
        assert cli_main(["mic", "--from-file", str(clip), "--url", server.url, "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["text"] for m in lines if m["type"] == "final"] == expected


def test_stop_event_ends_an_endless_source_and_closes_it() -> None:
    closed = []

    async def endless() -> AsyncIterator[np.ndarray]:
        try:
            while True:
                await asyncio.sleep(0.01)
                yield np.zeros(160, np.float32)
        finally:
            closed.append(True)

    async def main() -> int:
        stop = asyncio.Event()
        count = 0
        async for _ in mic.until(endless(), stop):
            count += 1
            if count == 3:
                stop.set()
        return count

    assert run(main(), timeout=5) == 3 and closed == [True]


def has_input_device() -> bool:
    try:
        return bool(mic.input_devices())
    except AudioError:
        return False


@pytest.mark.skipif(has_input_device(), reason="this machine has an input device")
def test_real_sounddevice_without_any_input_device(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        mic.load_sounddevice()
    except AudioError as e:  # no PortAudio library: that message must say how to fix it
        assert "PortAudio" in str(e) or "sounddevice" in str(e)
        return
    with pytest.raises(AudioError, match="no audio input device found"):
        mic.MicSource()


@pytest.mark.requires_mic
@pytest.mark.skipif(not has_input_device(), reason="no audio input device")
def test_real_microphone_half_a_second(tiny_recognizer: Recognizer) -> None:
    source = mic.MicSource(block_seconds=0.05)
    results, on_result = collect()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        await mic.run_local(source, tiny_recognizer, on_result, stop=stop)

    run(main(), timeout=10)
    assert all(isinstance(r, Result) for r in results)


def test_ctrl_c_finishes_the_segment_and_exits(tiny_model_path: Path, speech: np.ndarray, tmp_path: Path) -> None:
    import signal
    import subprocess

    import time

    long = tmp_path / "long.wav"  # 30 s at real-time pace; Ctrl-C comes once captions flow
    sf.write(long, np.tile(speech, 8), 16000, subtype="FLOAT")
    began = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "streamasr", "mic", "--from-file", str(long), "--model",
                           str(tiny_model_path), "--method", "greedy", "--format", "jsonl"], stdout=subprocess.PIPE, text=True,
                          cwd=Path(__file__).parent.parent) as proc:
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())  # captions are flowing
            elapsed = time.monotonic() - began
            proc.send_signal(signal.SIGINT)
            rest = [json.loads(line) for line in proc.stdout]
            assert proc.wait(20) == 0
        finally:
            proc.kill()
    lines = [first, *rest]
    assert lines[-1]["type"] == "final" and lines[-1]["text"]  # the open segment was finished, not dropped
    # The stream ended at the interrupt, not at the end of the file: a real-time source cannot
    # have delivered more audio than the wall time that passed (plus slack for a loaded machine).
    duration = len(speech) * 8 / 16000
    if elapsed + 3.0 >= duration:
        pytest.skip(f"the first caption took {elapsed:.0f} s of a {duration:.0f} s file: too loaded to tell")
    assert lines[-1]["end"] < elapsed + 3.0
