"""Write extra language-model text: WordNet's definitions, the installed user help and applications' messages.

    python scripts/make_lm_text.py --out data/corpus/text/lm_extra.txt \
        --exclude data/corpus/text/valid.txt --exclude data/corpus/text/test.txt \
        --exclude data/devset/dev.jsonl
    python scripts/build_lm.py --text data/corpus/text/train.txt --text data/corpus/text/lm_extra.txt ...

The synthesis sentences (``text/train.txt``) are old books, quotations and dictionary examples;
people talking to a machine say things like "press the pound key" or "your mailbox is full".
The definitions of WordNet (``wordnet-base``) and the help of GNOME, LibreOffice and the Debian
handbook (``gnome-user-docs``, ``libreoffice-help-en-us``, ``debian-handbook``), and of GIMP, KDE
and more GNOME applications, Debian's reference and FAQ (unpacked into
``/usr/local/share/streamasr/help``), all from ``scripts/install_data_deps.sh``, are modern,
instructional English, and so are the messages of applications' gettext catalogs (buttons, menus,
notices: "call ended"), which that script gathers into ``/usr/local/share/streamasr/ui``: text for
the LM only, never read aloud, so help sentences may hold numbers
("press 1"), spelled out like transcripts. Every ``--exclude`` sentence (text files: one per line;
``.jsonl`` manifests: their ``text``) is kept out: a line equal to one, or containing one of four
or more words, is dropped.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from streamasr.manifest import read_manifest
from streamasr.errors import StreamAsrError
from streamasr.corpus.importers import HELP_DIRS, UI_DIRS, WORDNET_DIRS, lm_extra_text


def read_sentences(path: Path) -> list[str]:
    """One sentence per line of a text file, or the transcripts of a JSON-lines manifest."""
    if path.suffix == ".jsonl":
        return [utt.text for utt in read_manifest(path)]
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output text file, one normalised line each")
    p.add_argument("--exclude", type=Path, action="append", default=[],
                   help="sentences to keep out: a text file or a .jsonl manifest (repeatable)")
    p.add_argument("--wordnet-dir", type=Path, action="append",
                   help="folder of WordNet's data.* files (repeatable; default: Debian's wordnet-base)")
    p.add_argument("--help-dir", type=Path, action="append",
                   help="folder of HTML (*.html), Mallard (*.page) or DocBook (*.xml, *.docbook) help, "
                        "searched recursively (repeatable; default: GNOME's and its applications', "
                        "LibreOffice's, the Debian handbook's and what install_data_deps.sh unpacked "
                        "into /usr/local/share/streamasr/help)")
    p.add_argument("--ui-dir", type=Path, action="append",
                   help="folder of applications' gettext catalogs (*.mo), searched recursively (repeatable; "
                        "default: what install_data_deps.sh gathered into /usr/local/share/streamasr/ui)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    began = time.perf_counter()
    held_out: list[str] = []
    for path in args.exclude:
        try:
            held_out += read_sentences(path)
        except (OSError, UnicodeDecodeError, StreamAsrError) as e:
            p.error(f"--exclude {path}: {e}; expected a UTF-8 text file of sentences or a JSON-lines manifest")
    wordnet_dirs, help_dirs = args.wordnet_dir or WORDNET_DIRS, args.help_dir or HELP_DIRS
    ui_dirs = args.ui_dir or UI_DIRS
    lines = lm_extra_text(held_out, wordnet_dirs, help_dirs, ui_dirs)
    if not lines:
        p.error(f"no text found in {', '.join(map(str, [*wordnet_dirs, *help_dirs, *ui_dirs]))}: expected WordNet "
                "data.* files or help pages (scripts/install_data_deps.sh installs wordnet-base and the "
                "help packages, and unpacks more help into /usr/local/share/streamasr/help)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = sum(len(line.split()) for line in lines)
    print(f"{args.out}: {len(lines)} lines, {words} words, {len(held_out)} held-out sentences kept out, "
          f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
