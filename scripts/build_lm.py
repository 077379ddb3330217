"""Build the character n-gram LM (and the word n-gram LM) for beam search from the training-text split.

    python scripts/build_lm.py --text /work/data/corpus/text/train.txt --short 100000 \
        --codes 20000 --numbers 60000 --words /usr/share/dict/words --out streamasr/models/lm.npz \
        --word-out streamasr/models/words.npz

``--short N`` adds N phrases of one to three words cut from the sentences (the corpus's short
phrases): an LM that only saw 4-20-word sentences makes a lone word an unlikely whole utterance,
so the decoder splits it into several words or drops it. ``--codes N`` adds N spelled letters
or digit strings (the corpus's codes, "k a y", "four one five"), which the sentences lack, and
``--numbers N`` N numbers, ordinals, dates, times and amounts as said ("the nineteenth", "ten
thirty", "five dollars"), which they have few of.
The file also stores the words of that text, and ``--words FILE`` adds a word list (one word per
line, e.g. Debian's wamerican) to them without adding it to the n-gram text: the beam search's
``--oov-penalty`` holds hypotheses to these words. ``--word-out FILE`` also writes a word n-gram LM
(``--word-order``, ``--word-prune``) of the same text, short phrases and codes included, for the
beam search's ``--word-lm`` and ``--word-weight``.

Only ever train on the training split: the validation and test texts, and any evaluation set's
transcripts, must stay unseen for their scores to mean anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from streamasr.training import lm_build
from streamasr.engine import lm
from streamasr.corpus import code_phrase, number_phrase, short_phrase
from streamasr.engine.text import normalize


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, action="append",
                   help="training sentences, one per line (repeatable)")
    p.add_argument("--out", type=Path, default=lm.default_lm_path(), help="output .npz (default: the bundled LM)")
    p.add_argument("--order", type=int, default=10, help="n-gram order (default: 10)")
    p.add_argument("--prune", type=float, default=3.0,
                   help="weighted-difference pruning threshold, 0 keeps all (default: 3)")
    p.add_argument("--short", type=int, default=0,
                   help="also train on this many 1-3-word phrases cut from the text (default: 0)")
    p.add_argument("--codes", type=int, default=0,
                   help="also train on this many spelled letters or digit strings (default: 0)")
    p.add_argument("--numbers", type=int, default=0,
                   help="also train on this many numbers, dates, times and amounts in words (default: 0)")
    p.add_argument("--words", type=Path, action="append", default=[],
                   help="a word list (one per line) for the stored words, not for the n-grams (repeatable)")
    p.add_argument("--word-out", type=Path, default=None,
                   help="also write a word n-gram LM of the same text here (.npz; default: none)")
    p.add_argument("--word-order", type=int, default=3, help="word n-gram order (default: 3)")
    p.add_argument("--word-prune", type=float, default=lm.WORD_PRUNE,
                   help=f"word LM weighted-difference pruning threshold, 0 keeps all (default: {lm.WORD_PRUNE:g})")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed of the short phrases, codes and numbers (default: 1234)")
    args = p.parse_args(argv)
    began = time.perf_counter()
    try:
        lines = [line for path in args.text for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"--text: {e}; expected a UTF-8 text file of sentences, one per line")
    for name in ("short", "codes", "numbers", "word_prune"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.word_order < 1:
        p.error(f"--word-order must be >= 1, got {args.word_order}")
    try:
        lines += [short_phrase(lines, i, args.seed) for i in range(args.short)]
    except ValueError as e:
        p.error(f"--short {args.short}: {e}")
    lines += [code_phrase(i, args.seed) for i in range(args.codes)]
    lines += [number_phrase(i, args.seed) for i in range(args.numbers)]
    try:
        listed = [w for path in args.words for w in normalize(path.read_text(encoding="utf-8")).split()]
    except (OSError, UnicodeDecodeError) as e:
        p.error(f"--words: {e}; expected a UTF-8 text file of words, one per line")
    words = None
    if args.word_out is not None:  # first: its order can fail on the vocabulary, in seconds, before the long build
        try:
            words = lm_build.build_words(lines, args.word_order, args.word_prune)
        except ValueError as e:
            p.error(f"--word-order {args.word_order}: {e}")
    model = lm_build.build(lines, args.order, args.prune, words=listed)
    model.save(args.out)
    contexts = sum(len(t["codes"]) for t in model.tables)
    entries = sum(len(t["symbols"]) for t in model.tables)
    print(f"{args.out}: order {args.order}, {contexts} contexts, {entries} entries, {len(model.words or ())} words, "
          f"{args.out.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - began:.1f} s", file=sys.stderr)
    if words is not None:
        words.save(args.word_out)
        grams = [len(t["symbols"]) for t in words.tables]
        print(f"{args.word_out}: order {args.word_order}, {len(words.words)} words, n-grams per order {grams}, "
              f"{args.word_out.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
