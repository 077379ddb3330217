"""streamasr: a streaming speech recogniser (log-mel -> GRU -> CTC), one engine for files, mic and websocket."""

from __future__ import annotations

from streamasr.engine.adapt import AdaptConfig, AdaptState, Speaker
from streamasr.engine.endpoint import EndpointConfig
from streamasr.results import Result, Word
from streamasr.engine.stream import Recognizer, StreamState, finish, flush_segment, step, step_many
from streamasr.transcribe import Transcript, transcribe_file

__all__ = ["AdaptConfig", "AdaptState", "EndpointConfig", "Recognizer", "Result", "Speaker", "StreamState", "Word",
           "finish", "flush_segment", "Transcript", "step", "step_many", "transcribe_file"]
__version__ = "0.1.0"
