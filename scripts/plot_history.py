"""Plot the default model's scores over its successive versions, against the targets.

    python scripts/plot_history.py docs/model_history.json docs/model_history.png

The JSON is a list of {"model", "session", "a", "b", "c", "dev_prompts"}: beam WER in percent on
(a) unseen sentences of training voices, (b) the held-out voice, (c) the real-speech dev set, the
last measured on ``dev_prompts`` prompts (563 until the non-speech prompts were dropped, then 551).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SETS = (
    ("a", "(a) unseen sentences, training voices", 8.0),
    ("b", "(b) held-out voice", 20.0),
    ("c", "(c) real human voice", 34.0),
)
FIELDS = ("model", "session", "a", "b", "c", "dev_prompts")


def load(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"plot_history: cannot read {path}: {e}; expected a JSON list of score rows")
    if not isinstance(rows, list) or not rows:
        raise SystemExit(f"plot_history: {path} holds {type(rows).__name__}; expected a non-empty JSON list")
    for i, r in enumerate(rows):
        missing = [f for f in FIELDS if not isinstance(r, dict) or f not in r]
        if missing:
            raise SystemExit(f"plot_history: row {i} of {path} lacks {', '.join(missing)}; expected {', '.join(FIELDS)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("history", type=Path, help="JSON list of scores per model version")
    p.add_argument("out", type=Path, help="PNG to write")
    args = p.parse_args(argv)
    rows = load(args.history)
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for (key, label, target), colour in zip(SETS, ("C0", "C1", "C2")):
        ax.plot(x, [r[key] for r in rows], "o-", color=colour, label=label)
        ax.axhline(target, color=colour, linestyle=":", linewidth=1)
        ax.annotate(f"target {target:g} %", (x[-1], target), textcoords="offset points", xytext=(4, 2),
                    color=colour, fontsize=8)
    # The dev set lost its 12 non-speech prompts once; mark where the real-voice line changes set.
    for i in range(1, len(rows)):
        if rows[i]["dev_prompts"] != rows[i - 1]["dev_prompts"]:
            ax.axvline(i - 0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"dev set {rows[i - 1]['dev_prompts']} → {rows[i]['dev_prompts']} prompts",
                        (i - 0.45, 2), fontsize=8, color="grey")
    ax.set_xticks(x, [f"s{r['session']}: {r['model']}" for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("WER, beam + LM (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title("streamasr default model: scores of each version")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
