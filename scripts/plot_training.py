"""Plot validation WER/CER against training step from a run's metrics.jsonl.

    python scripts/plot_training.py runs/mine/metrics.jsonl docs/training_curve.png [--dev dev_points.json]

``--dev`` takes a JSON list of {"step", "wer", "cer"} measured on the real-speech dev set, drawn
as separate markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("metrics", type=Path, help="metrics.jsonl written by streamasr train")
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("--dev", type=Path, default=None, help="JSON list of real-speech dev points")
    p.add_argument("--valid-label", default="synthetic voices",
                   help="what the run's validation set is, for the legend (default: synthetic voices)")
    p.add_argument("--title", default="streamasr default model: validation during training")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in args.metrics.read_text().splitlines() if line.strip()]
    if not rows:
        print(f"plot_training: {args.metrics} has no rows; expected JSON lines with step, wer, cer", file=sys.stderr)
        return 1
    # A resumed run appends; keep the last value per step.
    by_step = {r["step"]: r for r in rows}
    steps = sorted(by_step)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, [by_step[s]["wer"] for s in steps], label=f"valid WER ({args.valid_label})")
    ax.plot(steps, [by_step[s]["cer"] for s in steps], label=f"valid CER ({args.valid_label})")
    if args.dev:
        dev = json.loads(args.dev.read_text())
        ax.plot([d["step"] for d in dev], [d["wer"] for d in dev], "o--", label="dev WER (real voice)")
        ax.plot([d["step"] for d in dev], [d["cer"] for d in dev], "s--", label="dev CER (real voice)")
    ax.set_xlabel("training step")
    ax.set_ylabel("error rate")
    ax.set_ylim(0, 1.1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
