"""Wire protocol version 1: message types, parsing and serialisation. No sockets here.

Client -> server text frames are JSON objects with a ``type`` (``start``, ``flush``, ``stop``);
binary frames carry PCM. Server -> client frames are JSON objects (``ready``, ``partial``,
``final``, ``done``, ``error``). docs/protocol.md is the contract; this module implements it and is
shared by the server, the Python client and the tests, so every type name is spelled once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

import numpy as np

from streamasr.engine.audio import ENCODINGS, SAMPLE_RATE, pcm_to_float
from streamasr.engine.endpoint import EndpointConfig
from streamasr.engine.hotwords import DEFAULT_BOOST, MAX_BOOST, MAX_PHRASES
from streamasr.errors import AudioError, ProtocolError
from streamasr.results import MAX_NBEST, Alternative, Result, Word

VERSION = 1
PATH = "/v1/stream"  # websocket endpoint

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000  # after ``done``
CLOSE_GOING_AWAY = 1001  # server shutting down (after the last final and ``done``)
CLOSE_INVALID_DATA = 1007  # malformed JSON, wrong field types or values, bad audio bytes
CLOSE_POLICY = 1008  # protocol order broken, unknown type, idle timeout, stream too long
CLOSE_TOO_BIG = 1009  # a frame larger than the server's limit
CLOSE_INTERNAL = 1011  # a server bug (logged on the server)
CLOSE_TRY_AGAIN = 1013  # no free stream slot (normally refused earlier with HTTP 503)

Encoding = Literal["pcm_s16le", "pcm_f32le"]
MAX_HOTWORDS = 256  # entries in ``start.hotwords``
MAX_HOTWORD_CHARS = 100  # characters per hotword


def _invalid(code: str, message: str) -> ProtocolError:
    return ProtocolError(code, message, CLOSE_INVALID_DATA)


@dataclass(frozen=True)
class Start:
    """``start``: the first message of a stream; every field has a default."""

    sample_rate: int = SAMPLE_RATE  # Hz of the PCM that follows (resampled to 16 kHz by the server)
    encoding: Encoding = "pcm_s16le"  # sample format of binary frames, little endian, mono
    partials: bool = True  # send ``partial`` messages
    words: bool = True  # include per-word times and confidences in ``final``
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)  # segmentation rules
    # Words and phrases to boost in the beam search: each a string, or an object {"phrase", "boost"}
    # with its boost in nats per character (here a (phrase, boost) pair); a greedy server ignores them.
    hotwords: tuple[str | tuple[str, float], ...] = ()
    # Finals carry this many best texts as ``alternatives`` (with scores) when above 1.
    nbest: int = 1
    # A phrase list: each segment's text becomes a sequence of these phrases, or nothing (beam search only).
    grammar: tuple[str, ...] | None = None
    # Learn the speaker's voice as the stream goes, where the server offers it (serve --adapt-lr);
    # false for a stream with several speakers, whose voices would pull it different ways.
    adapt: bool = True
    # The name of the speaker's profile on the server (serve --speakers DIR): the stream starts from
    # what the speaker's earlier streams taught, and keeps what it teaches when it stops.
    speaker: str | None = None

    def to_json(self) -> str:
        return _dump({"type": "start", "sample_rate": self.sample_rate, "encoding": self.encoding,
                      "partials": self.partials, "words": self.words,
                      "endpoint": self.endpoint.to_dict(),
                      "hotwords": [h if isinstance(h, str) else {"phrase": h[0], "boost": h[1]} for h in self.hotwords],
                      "adapt": self.adapt,
                      "speaker": self.speaker, "nbest": self.nbest,
                      "grammar": list(self.grammar) if self.grammar is not None else None})


@dataclass(frozen=True)
class Flush:
    """``flush``: end the current segment now; its final comes back at once."""

    def to_json(self) -> str:
        return _dump({"type": "flush"})


@dataclass(frozen=True)
class Stop:
    """``stop``: end of audio; the server answers with the last final, ``done`` and close 1000."""

    def to_json(self) -> str:
        return _dump({"type": "stop"})


ClientMessage = Start | Flush | Stop


@dataclass(frozen=True)
class Ready:
    """``ready``: the server accepted ``start``."""

    session: str  # opaque id of this stream, also used in server logs
    model: str  # name of the model serving the stream
    sample_rate: int  # Hz the server expects binary frames at (echo of ``start``)
    encoding: Encoding  # echo of ``start``
    version: int = VERSION  # protocol version
    adapt: bool = False  # whether this stream learns its speaker's voice (speaker adaptation)

    def to_json(self) -> str:
        return _dump({"type": "ready", "session": self.session, "model": self.model,
                      "sample_rate": self.sample_rate, "encoding": self.encoding, "version": self.version,
                      "adapt": self.adapt})


@dataclass(frozen=True)
class Done:
    """``done``: no more results for this stream; the server closes next."""

    def to_json(self) -> str:
        return _dump({"type": "done"})


@dataclass(frozen=True)
class ErrorMessage:
    """``error``: what went wrong; the close code follows (see docs/protocol.md)."""

    code: str  # machine-readable, e.g. ``malformed_json``
    message: str  # human-readable: what was received and what was expected

    def to_json(self) -> str:
        return _dump({"type": "error", "code": self.code, "message": self.message})


ServerMessage = Ready | Result | Done | ErrorMessage


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def result_to_json(result: Result, words: bool = True) -> str:
    """Serialise a partial or final; finals carry ``words`` (empty when word times are off)."""
    obj: dict[str, Any] = {"type": result.kind, "segment": result.segment, "text": result.text,
                           "start": result.start, "end": result.end}
    if result.is_final:
        obj["words"] = [{"word": w.word, "start": w.start, "end": w.end, "conf": w.conf}
                        for w in (result.words if words else ())]
        if result.alternatives:
            obj["alternatives"] = [{"text": a.text, "score": a.score} for a in result.alternatives]
    return _dump(obj)


def _load_object(text: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        shown = text[:80] if isinstance(text, str) else repr(text[:80])
        raise _invalid("malformed_json", f"text frame is not valid JSON ({e}): {shown!r}") from e
    except RecursionError as e:  # a frame of ~1,000 nested brackets: the parser's own limit
        raise _invalid("malformed_json", "text frame nests arrays or objects too deeply to parse; expected a "
                                         "flat JSON object with a 'type'") from e
    if not isinstance(obj, dict):
        raise _invalid("malformed_json", f"expected a JSON object with a 'type', got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise _invalid("malformed_json", f"expected a string field 'type', got {kind!r}")
    return obj


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``obj[name]`` checked against ``kind`` (bool is never accepted as a number)."""
    value = obj.get(name, default)
    is_bool = isinstance(value, bool)
    wants_bool = kind is bool or (isinstance(kind, tuple) and bool in kind)
    if not isinstance(value, kind) or (is_bool and not wants_bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _invalid("bad_field", f"start.{name} must be {names}, got {value!r}")
    return value


def _parse_endpoint(value: Any) -> EndpointConfig:
    if value is None:
        return EndpointConfig()
    if not isinstance(value, dict):
        raise _invalid("bad_field", f"start.endpoint must be an object, got {value!r}")
    known = {f.name for f in fields(EndpointConfig)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise _invalid("bad_field", f"start.endpoint has unknown fields {unknown}; expected some of {sorted(known)}")
    for name, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _invalid("bad_field", f"start.endpoint.{name} must be a number of seconds, got {v!r}")
    try:
        return EndpointConfig(**{k: float(v) for k, v in value.items()})
    except ValueError as e:
        raise _invalid("bad_field", f"start.endpoint: {e}") from e


def _parse_hotwords(value: Any) -> tuple[str | tuple[str, float], ...]:
    expected = (f"start.hotwords must be a list of at most {MAX_HOTWORDS} entries, each a non-empty string of at "
                f"most {MAX_HOTWORD_CHARS} characters or an object {{\"phrase\": string, \"boost\": number of nats "
                f"per character in (0, {MAX_BOOST:g}]}}")
    if not isinstance(value, list) or len(value) > MAX_HOTWORDS:
        raise _invalid("bad_field", f"{expected}, got {str(value)[:80]}")
    out: list[str | tuple[str, float]] = []
    for entry in value:
        phrase, boost = (entry, None) if isinstance(entry, str) else (
            (entry.get("phrase"), entry.get("boost", DEFAULT_BOOST)) if isinstance(entry, dict) and
            set(entry) <= {"phrase", "boost"} else (None, None))
        if not isinstance(phrase, str) or not 0 < len(phrase) <= MAX_HOTWORD_CHARS or (boost is not None and (
                isinstance(boost, bool) or not isinstance(boost, (int, float)) or not 0 < boost <= MAX_BOOST)):
            raise _invalid("bad_field", f"{expected}, got the entry {str(entry)[:80]}")
        out.append(phrase if boost is None else (phrase, float(boost)))
    return tuple(out)


def _parse_grammar(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PHRASES or not all(
            isinstance(p, str) and 0 < len(p) <= MAX_HOTWORD_CHARS for p in value):
        raise _invalid("bad_field", f"start.grammar must be null or a list of 1 to {MAX_PHRASES} non-empty strings "
                                    f"of at most {MAX_HOTWORD_CHARS} characters, got {str(value)[:80]}")
    return tuple(value)


def _parse_nbest(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NBEST:
        raise _invalid("bad_field", f"start.nbest must be an integer in [1, {MAX_NBEST}], got {str(value)[:80]}")
    return value


# A speaker profile's name is a file name on the server: no paths, no hidden files.
SPEAKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _parse_speaker(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not SPEAKER_NAME.fullmatch(value)):
        raise _invalid("bad_field", f"start.speaker must be null or a name of 1 to 64 letters, digits, '_', '.' "
                                    f"and '-' that starts with a letter or digit, got {str(value)[:80]!r}")
    return value


def _parse_start(obj: dict[str, Any]) -> Start:
    known = {"type", *(f.name for f in fields(Start))}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise _invalid("bad_field", f"start has unknown fields {unknown}; expected some of {sorted(known)}")
    rate = _field(obj, "sample_rate", int, SAMPLE_RATE)
    if not 1000 <= rate <= 384000:
        raise _invalid("bad_field", f"start.sample_rate must be an integer in [1000, 384000] Hz, got {rate}")
    encoding = _field(obj, "encoding", str, "pcm_s16le")
    if encoding not in get_args(Encoding):
        raise _invalid("bad_field", f"start.encoding must be one of {list(ENCODINGS)}, got {encoding!r}")
    return Start(sample_rate=rate, encoding=encoding, partials=_field(obj, "partials", bool, True),
                 words=_field(obj, "words", bool, True), endpoint=_parse_endpoint(obj.get("endpoint")),
                 hotwords=_parse_hotwords(obj.get("hotwords", [])), adapt=_field(obj, "adapt", bool, True),
                 speaker=_parse_speaker(obj.get("speaker")), nbest=_parse_nbest(obj.get("nbest", 1)),
                 grammar=_parse_grammar(obj.get("grammar")))


def parse_client(text: str | bytes) -> ClientMessage:
    """Parse one client text frame.

    Raises:
        ProtocolError: ``malformed_json`` or ``bad_field`` (close 1007), ``unknown_type`` (1008).
    """
    obj = _load_object(text)
    kind = obj["type"]
    if kind == "start":
        return _parse_start(obj)
    if kind in ("flush", "stop"):
        extra = sorted(set(obj) - {"type"})
        if extra:
            raise _invalid("bad_field", f"{kind} takes no fields, got {extra}")
        return Flush() if kind == "flush" else Stop()
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected 'start', 'flush' or 'stop'",
                        CLOSE_POLICY)


def decode_audio(data: bytes, encoding: Encoding) -> np.ndarray:
    """A binary frame as float32 samples (shape (samples,)) in [-1, 1].

    Raises:
        ProtocolError: ``bad_audio`` (close 1007): a partial sample or NaN/inf values.
    """
    try:
        return pcm_to_float(data, encoding)
    except AudioError as e:
        raise _invalid("bad_audio", f"binary frame of {len(data)} bytes rejected: {e}") from e


def encode_audio(samples: np.ndarray, encoding: Encoding) -> bytes:
    """float32 samples (shape (samples,), in [-1, 1]) as the bytes of one binary frame."""
    samples = np.asarray(samples, dtype=np.float32)
    if encoding == "pcm_f32le":
        return samples.astype("<f4", copy=False).tobytes()
    scaled = np.clip(np.round(samples * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def _words(value: Any) -> tuple[Word, ...]:
    return tuple(Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w["conf"])) for w in value or ())


def parse_server(text: str | bytes) -> ServerMessage:
    """Parse one server text frame (used by clients).

    Raises:
        ProtocolError: the frame is not a server message of this protocol version.
    """
    obj = _load_object(text)
    kind = obj["type"]
    try:
        if kind == "ready":
            return Ready(str(obj["session"]), str(obj["model"]), int(obj["sample_rate"]), obj["encoding"],
                         int(obj.get("version", VERSION)), bool(obj.get("adapt", False)))
        if kind in ("partial", "final"):
            start = float(obj["start"])
            return Result(kind, int(obj["segment"]), str(obj["text"]), start, float(obj.get("end", start)),
                          _words(obj.get("words")),
                          tuple(Alternative(str(a["text"]), float(a["score"])) for a in obj.get("alternatives", ())))
        if kind == "done":
            return Done()
        if kind == "error":
            return ErrorMessage(str(obj["code"]), str(obj["message"]))
    except (KeyError, TypeError, ValueError) as e:
        raise _invalid("bad_field", f"server sent a malformed {kind!r} message: {str(obj)[:200]}") from e
    raise ProtocolError("unknown_type", f"server sent unknown message type {kind!r}", CLOSE_POLICY)
