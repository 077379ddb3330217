"""What a named speaker's profile costs a server stream (serve --speakers): loading it at the
stream's start, and at its stop learning from the last segment and saving it.

    python scripts/speaker_profile_cost.py [--repeat 7]

Runs the engine on the bundled real recording (3.2 s, one segment) as the stream's last segment,
greedy decoding, --adapt-lr 0.003, one torch thread; prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from streamasr.engine.adapt import AdaptConfig, Speaker, fingerprint
from streamasr.engine.beam import DecoderConfig
from streamasr.training.data import read_pcm
from streamasr.engine.run import pieces, run
from streamasr.engine.stream import Recognizer, keep_speaker

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "sample_allison_real.flac"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="streams to time (default: 7)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rec = Recognizer.load(None, decoder=DecoderConfig(method="greedy"))
    cfg = AdaptConfig(lr=0.003)
    audio = read_pcm(str(SAMPLE))
    began = time.perf_counter()
    fingerprint(rec.model)  # once per process: later loads reuse it
    first = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speaker.spk"
        rec.save_speaker(Speaker(cfg), path)
        loads, keeps = [], []
        for _ in range(args.repeat):
            began = time.perf_counter()
            speaker = rec.speaker(cfg, path)
            loads.append(time.perf_counter() - began)
            state = rec.initial_state(adapt=speaker.adapt)
            state, _ = run(rec, state, pieces(audio, 1600))
            began = time.perf_counter()
            keep_speaker(rec, state, speaker)
            rec.save_speaker(speaker, path)
            keeps.append(time.perf_counter() - began)
        size = path.stat().st_size
    print(f"model fingerprint (once per process): {first * 1000:.0f} ms; profile load: median "
          f"{statistics.median(loads) * 1000:.1f} ms; learning the last {len(audio) / 16000:.1f} s segment and "
          f"saving: median {statistics.median(keeps) * 1000:.0f} ms; profile file: {size} bytes")


if __name__ == "__main__":
    main()
