"""Import a real speech corpus you own into a streamasr manifest.

    python scripts/import_corpus.py librispeech /data/LibriSpeech/train-clean-100 out/libri.jsonl
    python scripts/import_corpus.py commonvoice /data/cv-corpus/en out/cv.jsonl [--tsv train.tsv]

The manifest (JSON lines {"audio", "text", "duration", "voice"}) can be given to
``streamasr train --train-manifest`` directly, or concatenated with the synthetic one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamasr.corpus.importers import common_voice_rows, librispeech_rows

from streamasr.manifest import write_manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("layout", choices=["librispeech", "commonvoice"], help="corpus layout")
    p.add_argument("root", type=Path, help="corpus directory")
    p.add_argument("out", type=Path, help="manifest to write")
    p.add_argument("--tsv", default="validated.tsv", help="Common Voice TSV to read")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.root.is_dir():
        print(f"import_corpus: {args.root} is not a directory; expected the corpus root", file=sys.stderr)
        return 2
    rows = librispeech_rows(args.root) if args.layout == "librispeech" else common_voice_rows(args.root, args.tsv)
    try:
        n = write_manifest(args.out, rows)
    except (ValueError, OSError) as e:
        print(f"import_corpus: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {n} utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
