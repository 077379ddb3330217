"""Import the real voice acting of two Debian games as training and evaluation manifests.

    python scripts/import_games.py --out /work/data/games               # both games
    python scripts/import_games.py --out /work/data/games --games fotaq  # Flight of the Amazon Queen only

Downloads the packages with apt-get (nothing is installed), writes OUT/<game>/audio/*.wav (16 kHz)
and OUT/<game>/{train,dev,test,interjections}.jsonl, split by speaker role (streamasr/corpus/games.py).
Run it again to resume; clips already written are kept. A clip that cannot be read is reported by
name and skipped; the exit code is then still 0 if every game imported, 1 if one failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from streamasr.corpus.games import GAMES, ImportConfig, import_games


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="corpus folder (one sub-folder per game)")
    p.add_argument("--games", default=",".join(GAMES), help=f"comma-separated, from {','.join(GAMES)}")
    p.add_argument("--debs", type=Path, default=None,
                   help="folder with the .deb files (default: OUT/debs, filled by apt-get download)")
    p.add_argument("--seed", type=int, default=31, help="orders the roles for the dev/test split")
    p.add_argument("--english", choices=["us", "uk"], default="us", help="BASS subtitle language")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = ImportConfig(out=args.out, games=tuple(g for g in args.games.split(",") if g),
                           debs=args.debs, seed=args.seed, english=args.english)
    except ValueError as e:
        print(f"import_games: {e}", file=sys.stderr)
        return 2
    bars: dict[str, tqdm] = {}

    def progress(game: str, done: int, total: int) -> None:
        bar = bars.get(game)
        if bar is None:
            bar = bars[game] = tqdm(total=total, desc=game, unit="clip")
        bar.update(done - bar.n)

    results = import_games(cfg, progress)
    for bar in bars.values():
        bar.close()
    failed = False
    for game, summary in results.items():
        if "error" in summary:
            print(f"{game}: failed: {summary['error']}", file=sys.stderr)
            failed = True
            continue
        parts = [f"{name} {summary[name]['utterances']} clips {summary[name]['hours']:.2f} h "
                 f"({len(summary[name]['roles'])} roles)" for name in ("train", "dev", "test")]
        print(f"{game}: " + ", ".join(parts) + f"; {summary['interjections']} interjections, "
              f"{len(summary['skipped'])} skipped (OUT/{game}/summary.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
