"""Counters for ``GET /metrics``, rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

from streamasr.service.worker import InferenceWorker


class Metrics:
    """Counters for ``GET /metrics`` (Prometheus text format 0.0.4)."""

    def __init__(self) -> None:
        self.streams_total = 0
        self.errors: Counter[str] = Counter()  # by protocol error code / disconnect kind
        self.rejected: Counter[str] = Counter()  # handshakes refused, by reason
        self.profiles: Counter[str] = Counter()  # speaker profiles (--speakers): new, loaded, kept, not_kept

    def render(self, active: int, worker: InferenceWorker) -> str:
        s = worker.stats
        rows: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            ("active_streams", "gauge", "Streams connected now.", [("", active)]),
            ("streams_total", "counter", "Streams accepted since start.", [("", self.streams_total)]),
            ("audio_seconds_total", "counter", "Seconds of audio processed.", [("", s.audio_seconds)]),
            ("compute_seconds_total", "counter", "Seconds the inference worker computed.", [("", s.compute_seconds)]),
            ("real_time_factor", "gauge", "Compute seconds per audio second since start.",
             [("", s.real_time_factor)]),
            ("learn_seconds_total", "counter", "Seconds speaker adaptation's thread learnt.",
             [("", worker.learner.seconds if worker.learner else 0.0)]),
            ("lessons_total", "counter", "Segments handed to speaker adaptation's thread.",
             [("", worker.learner.lessons if worker.learner else 0)]),
            ("queue_depth", "gauge", "Stream steps waiting for the inference worker.", [("", worker.queue_depth)]),
            ("batches_total", "counter", "Batched model calls.", [("", s.calls)]),
            ("batch_streams_total", "counter", "Stream steps served by batched calls.", [("", s.requests)]),
            ("errors_total", "counter", "Streams ended by an error, by kind.",
             [(f'{{kind="{k}"}}', v) for k, v in sorted(self.errors.items())]),
            ("rejected_total", "counter", "Handshakes refused, by reason.",
             [(f'{{reason="{k}"}}', v) for k, v in sorted(self.rejected.items())]),
            ("speaker_profiles_total", "counter", "Named speakers' profiles: streams that started a new one or "
             "loaded one, profiles kept or not kept at a stream's end.",
             [(f'{{event="{k}"}}', v) for k, v in sorted(self.profiles.items())]),
        ]
        lines: list[str] = []
        for name, kind, help_text, samples in rows:
            lines += [f"# HELP streamasr_{name} {help_text}", f"# TYPE streamasr_{name} {kind}"]
            lines += [f"streamasr_{name}{labels} {value:g}" for labels, value in samples]
        return "\n".join(lines) + "\n"
