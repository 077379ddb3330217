"""The Python client (StreamClient, CaptionPrinter) and the ``streamasr client`` command."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _serving import SHORT_ENDPOINT, finals, offline, run, running, threaded_server

from streamasr.engine.audio import load_audio
from streamasr.cli import main as cli_main
from streamasr.client import CaptionPrinter, ServerError, StreamClient
from streamasr.service.protocol import Start
from streamasr.results import Result
from streamasr.engine.stream import Recognizer


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    return load_audio(speech_wav)


def test_stream_accepts_an_async_source_of_chunks(tiny_recognizer: Recognizer, speech: np.ndarray) -> None:
    async def chunks() -> AsyncIterator[np.ndarray]:
        for offset in range(0, len(speech), 1234):
            yield speech[offset: offset + 1234]

    async def main() -> tuple[list[Result], str | None]:
        async with running(tiny_recognizer) as server:
            async with StreamClient(server.url, Start(encoding="pcm_s16le")) as client:
                model = client.ready.model if client.ready else None
                return [r async for r in client.stream(chunks())], model

    results, model = run(main())
    assert model == "tiny"
    assert [r.text for r in finals(results)] == [r.text for r in offline(tiny_recognizer, speech)]


def test_server_errors_raise_with_code_and_close_code(tiny_recognizer: Recognizer) -> None:
    async def main() -> ServerError:
        async with running(tiny_recognizer) as server:
            async with StreamClient(server.url) as client:
                await client.send_audio(b"\x00\x00\x00")  # not a whole int16 sample
                with pytest.raises(ServerError) as info:
                    async for _ in client.results():
                        pass
                return info.value

    error = run(main())
    assert (error.code, error.close_code) == ("bad_audio", 1007)
    assert "3 bytes" in str(error)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/stream"
    with pytest.raises(ServerError, match=f"cannot connect to {url}"):
        run(StreamClient(url).connect())


def test_using_a_client_before_connect_says_so() -> None:
    with pytest.raises(RuntimeError, match="not connected"):
        run(StreamClient().flush())


def test_caption_printer_live_terminal_rewrites_partials_in_place() -> None:
    out = io.StringIO()
    printer = CaptionPrinter(out, live=True)
    for result in (Result("partial", 0, "he", 0, 0.1), Result("partial", 0, "he", 0, 0.1),
                   Result("partial", 0, "hel", 0, 0.2), Result("final", 0, "hello", 0, 0.3),
                   Result("partial", 1, "wor", 0.5, 0.6)):
        printer.show(result)
    printer.close()
    assert out.getvalue() == "\r\x1b[Khe\r\x1b[Khel\r\x1b[Khello\n\r\x1b[Kwor\n"


def test_caption_printer_pipe_gets_finals_only_and_jsonl_gets_everything() -> None:
    results = [Result("partial", 0, "he", 0, 0.1), Result("final", 0, "hello", 0, 0.3)]
    plain, jsonl = io.StringIO(), io.StringIO()
    for out, fmt in ((plain, "text"), (jsonl, "jsonl")):
        printer = CaptionPrinter(out, fmt)  # type: ignore[arg-type]
        for result in results:
            printer.show(result)
        printer.close()
    assert plain.getvalue() == "hello\n"
    assert [json.loads(line)["type"] for line in jsonl.getvalue().splitlines()] == ["partial", "final"]


def test_client_command_prints_finals(tiny_recognizer: Recognizer, speech_wav: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    expected = [r.text for r in offline(tiny_recognizer, load_audio(speech_wav), endpoint=SHORT_ENDPOINT)]
    with threaded_server(tiny_recognizer) as server:
        code = cli_main(["client", str(speech_wav), "--url", server.url, "--fast",
                         "--endpoint-silence-after-speech", "0.3"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_client_command_jsonl_at_real_time_pace(tiny_recognizer: Recognizer, speech: np.ndarray, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, speech[:16000], 16000, subtype="FLOAT")
    with threaded_server(tiny_recognizer) as server:
        began = time.monotonic()
        code = cli_main(["client", str(short), "--url", server.url, "--format", "jsonl", "--chunk-ms", "50"])
        took = time.monotonic() - began
    assert code == 0 and took >= 0.9  # one second of audio at real time
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {m["type"] for m in lines} <= {"partial", "final"}
    assert [m["text"] for m in lines if m["type"] == "final"] == [
        r.text for r in offline(tiny_recognizer, speech[:16000])]


def test_client_command_reports_refusals(tiny_recognizer: Recognizer, speech_wav: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with threaded_server(tiny_recognizer, token="s3cret") as server:
        code = cli_main(["client", str(speech_wav), "--url", server.url, "--fast"])
    assert code == 2
    assert "http_401" in capsys.readouterr().err
