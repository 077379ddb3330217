"""Build the character n-gram LM for beam search from the training-text split.

    python scripts/build_lm.py --text /work/data/corpus/text/train.txt --out streamasr/models/lm.npz

Only ever train on the training split: the validation and test texts, and any evaluation set's
transcripts, must stay unseen for their scores to mean anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from streamasr import lm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, action="append",
                   help="training sentences, one per line (repeatable)")
    p.add_argument("--out", type=Path, default=lm.default_lm_path(), help="output .npz (default: the bundled LM)")
    p.add_argument("--order", type=int, default=10, help="n-gram order (default: 10)")
    p.add_argument("--prune", type=float, default=3.0,
                   help="weighted-difference pruning threshold, 0 keeps all (default: 3)")
    args = p.parse_args(argv)
    began = time.perf_counter()
    lines = [line for path in args.text for line in path.read_text(encoding="utf-8").splitlines()]
    model = lm.build(lines, args.order, args.prune)
    model.save(args.out)
    contexts = sum(len(t["codes"]) for t in model.tables)
    entries = sum(len(t["symbols"]) for t in model.tables)
    print(f"{args.out}: order {args.order}, {contexts} contexts, {entries} entries, "
          f"{args.out.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
