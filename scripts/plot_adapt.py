"""Plot how speaker adaptation does over a voice's recordings: WER over a sliding window, without
and with adaptation, one panel per voice, from two `streamasr eval --hyps` files of the same
manifests (the recordings in the same order).

    python scripts/plot_adapt.py plain.jsonl adapted.jsonl docs/adapt.png [--window 100] [--voice allison ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import jiwer


def read_hyps(path: Path) -> list[dict[str, str]]:
    """Rows of an eval hypotheses file; ValueError naming the file and line when one is not a hypothesis."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            rows.append({"audio": row["audio"], "voice": row["voice"], "ref": row["ref"], "hyp": row["hyp"]})
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected a streamasr eval --hyps row with audio, voice, ref and "
                             f"hyp, got {line[:80]!r} ({e})") from e
    return rows


def windowed_wer(rows: list[dict[str, str]], window: int) -> list[float]:
    """WER (%) of the ``window`` recordings ending at each one (fewer at the start)."""
    out = []
    for i in range(len(rows)):
        part = rows[max(0, i + 1 - window): i + 1]
        out.append(100 * jiwer.wer([r["ref"] for r in part], [r["hyp"] or "<empty>" for r in part]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plain", type=Path)
    p.add_argument("adapted", type=Path)
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("--window", type=int, default=100, help="recordings per point (default: 100)")
    p.add_argument("--voice", action="append", default=None, help="voices to draw (default: every voice "
                                                                   "with at least two windows of recordings)")
    args = p.parse_args(argv)
    try:
        if args.window < 1:
            raise ValueError(f"--window must be at least 1, got {args.window}")
        plain, adapted = read_hyps(args.plain), read_hyps(args.adapted)
        if [r["audio"] for r in plain] != [r["audio"] for r in adapted]:
            raise ValueError(f"{args.plain} and {args.adapted} must list the same recordings in the same order")
        counts = Counter(r["voice"] for r in plain)
        voices = args.voice or sorted(v for v, n in counts.items() if n >= 2 * args.window)
        missing = [v for v in voices if v not in counts]
        if missing or not voices:
            raise ValueError(f"no recordings of voice {missing[0]!r}" if missing else
                             f"no voice has {2 * args.window} recordings; lower --window")
    except (OSError, ValueError) as e:
        print(f"plot_adapt: error: {e}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(voices), figsize=(5.5 * len(voices), 3.8), squeeze=False)
    for ax, voice in zip(axes[0], voices):
        for rows, label in ((plain, "as shipped"), (adapted, "adapted to the voice")):
            mine = [r for r in rows if r["voice"] == voice]
            ax.plot(range(1, len(mine) + 1), windowed_wer(mine, args.window), label=label)
        ax.set_title(f"{voice}: {counts[voice]} recordings")
        ax.set_xlabel("recordings of the voice so far")
        ax.set_ylabel(f"WER % of the last {args.window}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
