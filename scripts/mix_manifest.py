"""Combine manifests into one training manifest with per-voice weights.

    python scripts/mix_manifest.py data/corpus/train.jsonl data/corpus/kokoro.jsonl \
        --weight kokoro=2 --weight espeak=0.5 --out data/corpus/train_mix.jsonl

A weight applies to every voice whose name starts with it (``kokoro`` covers all Kokoro voices):
2 lists each of their utterances twice, 0.5 keeps every second one. The same audio file listed in
several inputs counts once. The default model's run used the two weights above.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamasr.training.data import mix

from streamasr.manifest import manifest_stats, read_manifest, write_manifest
from streamasr.errors import StreamAsrError


def parse_weight(spec: str) -> tuple[str, float]:
    voice, sep, value = spec.partition("=")
    try:
        if not sep or not voice:
            raise ValueError
        return voice, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VOICE_PREFIX=WEIGHT such as kokoro=2, got {spec!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("manifests", type=Path, nargs="+", help="input manifests (JSON lines)")
    p.add_argument("--out", type=Path, required=True, help="manifest to write")
    p.add_argument("--weight", type=parse_weight, action="append", default=[], metavar="VOICE=W",
                   help="weight of the voices starting with VOICE (repeatable; others: 1)")
    args = p.parse_args(argv)
    try:
        items = mix([u for m in args.manifests for u in read_manifest(m)], dict(args.weight))
    except (StreamAsrError, ValueError) as e:
        print(f"mix_manifest: {e}", file=sys.stderr)
        return 2
    write_manifest(args.out, items)
    stats = manifest_stats(items)
    print(f"{args.out}: {stats['utterances']} utterances, {stats['hours']} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
