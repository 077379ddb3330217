"""Build (or resume) the synthetic speech corpus.

    python scripts/make_corpus.py --out /work/data/corpus
    python scripts/make_corpus.py --out /tmp/small --engines espeak,flite --train-per-voice 100
    python scripts/make_corpus.py --out /work/data/corpus --manifests-only
    nice -n 10 python scripts/make_corpus.py --out /work/data/corpus --engines kokoro --jobs 1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from streamasr.corpus import ENGINES, CorpusConfig, build_corpus, manifest_stats, parse_amounts
from streamasr.corpus.kokoro import KokoroConfig, build_kokoro


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="corpus directory")
    p.add_argument("--engines", default="espeak,flite,festival,hibari,piper",
                   help=f"comma-separated engines to run now, from {','.join(ENGINES)}")
    p.add_argument("--train-per-voice", type=int, default=None,
                   help="training utterances for every voice (default: per-voice defaults)")
    p.add_argument("--amount", action="append", default=[], metavar="VOICE=N",
                   help="training utterances for one voice (repeatable; 0 drops the voice)")
    p.add_argument("--short-per-voice", type=int, default=300,
                   help="extra training utterances of 1-3 words per classic voice (default: 300)")
    p.add_argument("--codes-per-voice", type=int, default=300,
                   help="extra training utterances of spelled letters or digit strings per classic "
                        "voice (default: 300)")
    p.add_argument("--numbers-per-voice", type=int, default=300,
                   help="extra training utterances of numbers, dates, times and amounts per classic "
                        "voice (default: 300)")
    p.add_argument("--n-valid", type=int, default=300, help="validation sentences")
    p.add_argument("--n-test", type=int, default=300, help="test (and heldout) sentences")
    p.add_argument("--no-heldout", action="store_true", help="do not build heldout.jsonl")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--manifests-only", action="store_true",
                   help="only rebuild the manifests from the WAVs on disk")
    p.add_argument("--kokoro-voices", type=Path, default=None,
                   help="directory of Kokoro NAME.bin voices (default: OUT/kokoro-voices)")
    p.add_argument("--kokoro-utts", type=int, default=5000, help="Kokoro training utterances")
    p.add_argument("--kokoro-short", type=int, default=3000,
                   help="extra Kokoro training utterances of 1-3 words (default: 3000)")
    p.add_argument("--kokoro-codes", type=int, default=1500,
                   help="extra Kokoro training utterances of spelled letters or digits (default: 1500)")
    p.add_argument("--kokoro-numbers", type=int, default=1500,
                   help="extra Kokoro training utterances of numbers, dates, times and amounts (default: 1500)")
    p.add_argument("--kokoro-blends", type=int, default=0,
                   help="extra Kokoro training sentences, each by its own random three-voice blend "
                        "(default: 0)")
    p.add_argument("--kokoro-casual", type=int, default=0,
                   help="the first N blend sentences again, each by another blend, with words run "
                        "together as people say them (flapped t, reduced function words; default: 0)")
    p.add_argument("--kokoro-test", type=int, default=0,
                   help="test sentences read by the 28 Kokoro voices in turn, in kokoro_test.jsonl "
                        "(never trained on; made first)")
    p.add_argument("--kokoro-mixes", type=int, default=36, help="Kokoro two-voice mixtures")
    p.add_argument("--kokoro-threads", type=int, default=1, help="onnxruntime threads per job")
    p.add_argument("--log", type=Path, default=None, help="also log to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the corpus build and print per-voice statistics."""
    args = parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log is not None:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engines = () if args.manifests_only else tuple(e for e in args.engines.split(",") if e)
    try:
        cfg = CorpusConfig(out=args.out, amounts=parse_amounts(args.amount, args.train_per_voice),
                           engines=engines, heldout_voice=None if args.no_heldout else "piper_joe",
                           short_per_voice=args.short_per_voice,
                           codes_per_voice=args.codes_per_voice,
                           numbers_per_voice=args.numbers_per_voice, n_valid=args.n_valid,
                           n_test=args.n_test, seed=args.seed, jobs=args.jobs)
        kcfg = KokoroConfig(voices_dir=args.kokoro_voices or args.out / "kokoro-voices",
                            utterances=args.kokoro_utts, short=args.kokoro_short,
                            codes=args.kokoro_codes, numbers=args.kokoro_numbers,
                            blends=args.kokoro_blends,
                            casual=args.kokoro_casual, test=args.kokoro_test,
                            mixes=args.kokoro_mixes,
                            threads=args.kokoro_threads)
    except ValueError as e:
        print(f"make_corpus: {e}", file=sys.stderr)
        return 2
    bars: dict[str, tqdm] = {}

    def progress(engine: str, done: int, total: int) -> None:
        if engine not in bars:
            # initial: a resumed run's rate and ETA count only what this run makes
            bars[engine] = tqdm(total=total, initial=done, desc=engine, unit="utt", file=sys.stderr)
        bars[engine].n = done
        bars[engine].refresh()

    counts = build_corpus(cfg, progress)
    if "kokoro" in engines:
        try:
            build_kokoro(cfg, kcfg, progress)
        except ValueError as e:
            print(f"make_corpus: {e}", file=sys.stderr)
            return 2
        counts = build_corpus(CorpusConfig(**{**cfg.__dict__, "engines": ()}))
    for bar in bars.values():
        bar.close()
    for name in counts:
        for voice, (n, hours) in sorted(manifest_stats(args.out / f"{name}.jsonl").items()):
            print(f"{name:8s} {voice:18s} {n:6d} utts {hours:7.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
