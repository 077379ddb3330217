"""Unpack the zips of ``pack_corpus.py`` and decode their Opus audio to 16-bit WAV, once, before training.

    python scripts/unpack_corpus.py packed/part1.zip packed/part2.zip --out data     # -> data/train.jsonl

Decoding Opus was a third of a data worker's time (profiled on this project's CPU), and a training
run decodes every file again on every pass over the data. Decoding once up front takes seconds on 16
cores; the lent GPU's run that did so trained at ~6,300 audio s/s, one that decoded in its data
workers at ~3,900. Zips may be unpacked into the same folder in separate runs (one per upload);
``train.jsonl`` always lists every part there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import zipfile
from multiprocessing import Pool
from pathlib import Path

import soundfile as sf
from tqdm import tqdm


def decode(path: Path) -> None:
    """``x.opus`` -> ``x.wav`` (16-bit PCM at the file's own rate); the Opus file is removed."""
    audio, rate = sf.read(path, dtype="int16")
    sf.write(path.with_suffix(".wav"), audio, rate, subtype="PCM_16")
    path.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("zips", type=Path, nargs="+", help="part*.zip files written by pack_corpus.py")
    p.add_argument("--out", type=Path, required=True, help="folder to unpack into; gets train.jsonl")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="decoding processes (default: all cores)")
    args = p.parse_args(argv)
    try:
        if args.jobs < 1:
            raise ValueError(f"expected --jobs >= 1, got {args.jobs}")
        for z in args.zips:
            if not zipfile.is_zipfile(z):
                raise ValueError(f"{z} is not a zip file; expected a part*.zip written by pack_corpus.py")
    except ValueError as e:
        print(f"unpack_corpus: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for z in args.zips:
        with zipfile.ZipFile(z) as f:
            f.extractall(args.out)
    files = sorted(args.out.glob("part*/*.opus"))
    with Pool(args.jobs) if args.jobs > 1 else contextlib.nullcontext() as pool:
        done = pool.imap_unordered(decode, files, chunksize=32) if pool else map(decode, files)
        for _ in tqdm(done, total=len(files), desc="decode", file=sys.stderr):
            pass
    manifests = sorted(args.out.glob("part*/manifest.jsonl"))
    for m in manifests:  # paths stay relative to --out
        m.write_text(m.read_text().replace('.opus"', '.wav"'))
    rows = "".join(m.read_text() for m in manifests)
    (args.out / "train.jsonl").write_text(rows)
    print(f"{args.out / 'train.jsonl'}: {rows.count(chr(10))} lines from {len(manifests)} parts "
          f"({len(files)} files decoded now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
