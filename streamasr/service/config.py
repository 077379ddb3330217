"""The service's limits and settings: ``ServerConfig``, one field per ``streamasr serve`` option."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # interface to listen on
    port: int = 8765  # TCP port (0: any free port)
    max_connections: int = 64  # concurrent streams; more are refused at the handshake with HTTP 503
    max_frame_bytes: int = 1 << 20  # bytes per websocket message; a larger one closes with 1009
    idle_timeout: float = 30.0  # seconds without any client message before close 1008
    start_timeout: float = 10.0  # seconds from the handshake to 'start' before close 1008
    max_stream_seconds: float = 4 * 3600.0  # seconds of audio per stream; beyond: last final, close 1008
    # Wall-clock seconds a stream may stay open, however little audio it sends; beyond: last final, close 1008.
    max_stream_wall_seconds: float = 6 * 3600.0
    # Least audio a stream must send, in seconds per second since 'start' (checked from a minute in):
    # a client that trickles a sample or a flush now and then would otherwise hold its slot for good.
    min_audio_rate: float = 0.05
    # Streams one client address may hold at once (0: no limit; behind a proxy every client has its address).
    max_connections_per_address: int = 0
    partial_interval_ms: float = 200.0  # ms: least time between two partials of one stream
    max_pending_seconds: float = 10.0  # seconds of received, unprocessed audio per stream before reading pauses
    shutdown_timeout: float = 10.0  # seconds to deliver finals on SIGTERM/SIGINT before closing anyway
    token: str = ""  # bearer token clients must send ("" = none); the CLI also reads STREAMASR_TOKEN
    allowed_origins: str = ""  # comma-separated browser origins besides the server's own ("*": any page)
    speakers: str = field(default="", metadata={"help": "with --adapt-lr: keep the voice of each speaker a stream "
                                                         "names (start.speaker) in DIR/NAME.spk, between streams "
                                                         "(default: none)"})

    def check_speakers(self, adapting: bool) -> None:
        """``--speakers`` keeps what adaptation learns, so it needs adaptation on."""
        if self.speakers and not adapting:
            raise ValueError(f"--speakers {self.speakers} keeps what streams' speakers taught: it needs --adapt-lr "
                             f"(e.g. 0.003)")

    def __post_init__(self) -> None:
        checks: tuple[tuple[str, float, float], ...] = (
            ("port", 0, 65535), ("max_connections", 1, 100000), ("max_frame_bytes", 1024, 1 << 30),
            ("idle_timeout", 0.1, 86400), ("start_timeout", 0.1, 86400), ("max_stream_seconds", 1, 7 * 86400),
            ("max_stream_wall_seconds", 1, 30 * 86400), ("min_audio_rate", 0, 1),
            ("max_connections_per_address", 0, 100000),
            ("partial_interval_ms", 0, 60000), ("max_pending_seconds", 0.1, 3600),
            ("shutdown_timeout", 0, 3600))
        for name, low, high in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"ServerConfig.{name} must be in [{low}, {high}], got {value!r}")
        if not self.host:
            raise ValueError("ServerConfig.host must be a host name or address, got ''")
