"""Protocol v1 messages: parsing, validation errors with their close codes, serialisation round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamasr.service import protocol
from streamasr.engine.endpoint import EndpointConfig
from streamasr.errors import ProtocolError
from streamasr.service.protocol import Done, ErrorMessage, Flush, Ready, Start, Stop
from streamasr.results import Result, Word


def test_start_defaults_match_the_documented_ones() -> None:
    start = protocol.parse_client('{"type": "start"}')
    assert start == Start(sample_rate=16000, encoding="pcm_s16le", partials=True, words=True,
                          endpoint=EndpointConfig(), hotwords=())


def test_start_with_every_field_round_trips() -> None:
    start = Start(sample_rate=44100, encoding="pcm_f32le", partials=False, words=False,
                  endpoint=EndpointConfig(silence_after_speech=0.5, silence_no_speech=2, max_segment=10),
                  hotwords=("weasels", ("acme corp", 3.0)), nbest=4, adapt=False, speaker="ann",
                  grammar=("yes", "no thanks"))
    assert protocol.parse_client(start.to_json()) == start


@pytest.mark.parametrize("message", [Flush(), Stop()])
def test_flush_and_stop_round_trip(message: Flush | Stop) -> None:
    assert protocol.parse_client(message.to_json()) == message


@pytest.mark.parametrize("text, code, close", [
    ("{not json", "malformed_json", 1007),
    ("[" * 100_000 + "]" * 100_000, "malformed_json", 1007),  # deeper than the JSON parser can go
    ('{"type": "start", "endpoint": ' + "[" * 5_000 + "]" * 5_000 + "}", "malformed_json", 1007),
    ("", "malformed_json", 1007),
    ("[1, 2]", "malformed_json", 1007),
    ('"start"', "malformed_json", 1007),
    ('{"kind": "start"}', "malformed_json", 1007),
    ('{"type": 3}', "malformed_json", 1007),
    ('{"type": "start", "sample_rate": NaN}', "malformed_json", 1007),
    ('{"type": "start", "sample_rate": Infinity}', "malformed_json", 1007),
    ('{"type": "hello"}', "unknown_type", 1008),
    ('{"type": "eof"}', "unknown_type", 1008),
    ('{"type": "start", "sample_rate": "16000"}', "bad_field", 1007),
    ('{"type": "start", "sample_rate": 16000.5}', "bad_field", 1007),
    ('{"type": "start", "sample_rate": true}', "bad_field", 1007),
    ('{"type": "start", "sample_rate": 100}', "bad_field", 1007),
    ('{"type": "start", "encoding": "mp3"}', "bad_field", 1007),
    ('{"type": "start", "partials": "yes"}', "bad_field", 1007),
    ('{"type": "start", "words": 1}', "bad_field", 1007),
    ('{"type": "start", "endpoint": 3}', "bad_field", 1007),
    ('{"type": "start", "endpoint": {"silence_after_speech": -1}}', "bad_field", 1007),
    ('{"type": "start", "endpoint": {"silence_after_speech": "1"}}', "bad_field", 1007),
    ('{"type": "start", "endpoint": {"pause": 1}}', "bad_field", 1007),
    ('{"type": "start", "hotwords": "weasels"}', "bad_field", 1007),
    ('{"type": "start", "hotwords": [""]}', "bad_field", 1007),
    ('{"type": "start", "hotwords": [{"phrase": "acme", "boost": 0}]}', "bad_field", 1007),
    ('{"type": "start", "hotwords": [{"phrase": "acme", "weight": 2}]}', "bad_field", 1007),
    ('{"type": "start", "hotwords": [{"boost": 2}]}', "bad_field", 1007),
    ('{"type": "start", "hotwords": [3]}', "bad_field", 1007),
    ('{"type": "start", "grammar": []}', "bad_field", 1007),
    ('{"type": "start", "grammar": "yes"}', "bad_field", 1007),
    ('{"type": "start", "grammar": ["yes", ""]}', "bad_field", 1007),
    ('{"type": "start", "sampel_rate": 8000}', "bad_field", 1007),
    ('{"type": "stop", "now": true}', "bad_field", 1007),
])
def test_bad_client_messages_name_code_and_close_code(text: str, code: str, close: int) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_client(text)
    assert (info.value.code, info.value.close_code) == (code, close)
    assert str(info.value)  # a human-readable explanation


def test_error_text_says_what_was_received_and_expected() -> None:
    with pytest.raises(ProtocolError, match=r"start.sample_rate must be int, got '16000'"):
        protocol.parse_client('{"type": "start", "sample_rate": "16000"}')
    with pytest.raises(ProtocolError, match=r"unknown fields \['sampel_rate'\]; expected some of"):
        protocol.parse_client('{"type": "start", "sampel_rate": 8000}')
    with pytest.raises(ProtocolError, match=r"unknown message type 'hello'; expected 'start', 'flush' or 'stop'"):
        protocol.parse_client('{"type": "hello"}')


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
def test_audio_encode_decode_round_trip(encoding: protocol.Encoding) -> None:
    samples = np.sin(np.linspace(0, 20, 1000)).astype(np.float32) * 0.5
    decoded = protocol.decode_audio(protocol.encode_audio(samples, encoding), encoding)
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, samples, atol=1 / 32768 if encoding == "pcm_s16le" else 0)


def test_s16_encoding_clips_instead_of_wrapping() -> None:
    data = protocol.encode_audio(np.array([2.0, -2.0], np.float32), "pcm_s16le")
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32768]


@pytest.mark.parametrize("data, encoding", [
    (b"\x00\x01\x02", "pcm_s16le"),
    (b"\x00" * 6, "pcm_f32le"),
    (np.array([0.0, np.nan], "<f4").tobytes(), "pcm_f32le"),
    (np.array([np.inf, 0.0], "<f4").tobytes(), "pcm_f32le"),
])
def test_bad_audio_frames_are_invalid_data(data: bytes, encoding: protocol.Encoding) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_audio(data, encoding)
    assert (info.value.code, info.value.close_code) == ("bad_audio", 1007)
    assert f"{len(data)} bytes" in str(info.value)


def test_results_serialise_with_and_without_words() -> None:
    words = (Word("hi", 0.1, 0.3, 0.9), Word("there", 0.4, 0.8, 0.75))
    final = Result("final", 2, "hi there", 0.1, 0.8, words)
    obj = json.loads(protocol.result_to_json(final))
    assert obj == {"type": "final", "segment": 2, "text": "hi there", "start": 0.1, "end": 0.8,
                   "words": [{"word": "hi", "start": 0.1, "end": 0.3, "conf": 0.9},
                             {"word": "there", "start": 0.4, "end": 0.8, "conf": 0.75}]}
    assert json.loads(protocol.result_to_json(final, words=False))["words"] == []
    assert protocol.parse_server(protocol.result_to_json(final)) == final
    partial = Result("partial", 0, "hi th", 0.1, 0.5)
    assert "words" not in json.loads(protocol.result_to_json(partial))
    assert protocol.parse_server(protocol.result_to_json(partial)) == partial


@pytest.mark.parametrize("message", [
    Ready("abc", "tiny", 48000, "pcm_f32le"), Done(), ErrorMessage("bad_audio", "3 bytes"),
])
def test_server_messages_round_trip(message: Ready | Done | ErrorMessage) -> None:
    assert protocol.parse_server(message.to_json()) == message


def test_ready_carries_the_protocol_version() -> None:
    assert json.loads(Ready("s", "m", 16000, "pcm_s16le").to_json())["version"] == protocol.VERSION == 1


@pytest.mark.parametrize("text", ['{"type": "final", "segment": 0}', '{"type": "surprise"}'])
def test_malformed_server_messages_are_rejected(text: str) -> None:
    with pytest.raises(ProtocolError):
        protocol.parse_server(text)


def test_nbest_is_validated_and_alternatives_round_trip() -> None:
    from streamasr.results import Alternative

    assert protocol.parse_client('{"type": "start", "nbest": 3}').nbest == 3  # type: ignore[union-attr]
    for bad in ("0", "11", "2.5", "true", '"3"'):
        with pytest.raises(ProtocolError, match=r"start.nbest must be an integer in \[1, 10\]"):
            protocol.parse_client('{"type": "start", "nbest": %s}' % bad)
    final = Result("final", 0, "hold the line", 0.1, 0.9, (),
                   (Alternative("hold the line", 0.0), Alternative("hold a line", -1.25)))
    wire = protocol.result_to_json(final)
    assert json.loads(wire)["alternatives"] == [{"text": "hold the line", "score": 0.0},
                                                {"text": "hold a line", "score": -1.25}]
    assert protocol.parse_server(wire) == final
    assert "alternatives" not in json.loads(protocol.result_to_json(Result("final", 0, "x", 0.0, 0.1)))
