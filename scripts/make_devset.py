"""Build the real-speech development set from Debian's Asterisk prompts.

    python scripts/make_devset.py --out /work/data/devset

Needs ``apt-get install ffmpeg asterisk-core-sounds-en asterisk-core-sounds-en-g722``.
Never train on it: it is the only human voice we can measure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streamasr.corpus.importers import ASTERISK_SOUNDS, ASTERISK_TEXT, asterisk_devset


def main(argv: list[str] | None = None) -> int:
    """Decode the prompts, write dev.jsonl and print its size."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--sounds", type=Path, default=ASTERISK_SOUNDS, help="G.722 prompt tree")
    p.add_argument("--transcripts", type=Path, default=ASTERISK_TEXT, help="core-sounds-en.txt.gz")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        n = asterisk_devset(args.out, args.sounds, args.transcripts)
    except (ValueError, OSError) as e:
        print(f"make_devset: {e}", file=sys.stderr)
        return 2
    with open(args.out / "dev.jsonl", encoding="utf-8") as f:
        minutes = sum(json.loads(line)["duration"] for line in f) / 60.0
    print(f"{n} prompts, {minutes:.1f} minutes -> {args.out / 'dev.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
