"""Build a small voice-command test set: digits, yes/no and menu phrases read by synthetic voices.

    python scripts/make_commands.py --out data/commands
    streamasr eval --manifest data/commands/commands.jsonl --grammar data/commands/phrases.txt

Writes ``phrases.txt`` (the phrase list a command app would give as its grammar), ``commands.jsonl``
(one utterance per line: a menu phrase, a yes/no answer or a string of 2-5 digits) and the WAVs.
The voices are the held-out Piper voice and two of the training voices (espeak, flite slt).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from streamasr.corpus.tts import Utt, synth_chunk, wav_duration

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MENU = ("yes", "no", "main menu", "billing", "technical support", "speak to an operator", "repeat that",
        "cancel", "help", "next", "go back", "account balance", "pay my bill", "check my order status",
        "new account", "opening hours", "stop", "start over")
VOICES = {"piper_joe": "piper", "espeak": "espeak", "flite_slt": "flite"}


def plan(count: int, seed: int) -> list[str]:
    """``count`` texts: half menu phrases (and yes/no), half digit strings."""
    rng = random.Random(seed)
    texts = [rng.choice(MENU) for _ in range(count // 2)]
    texts += [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 5))) for _ in range(count - count // 2)]
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--per-voice", type=int, default=40, help="utterances per voice (default: 40)")
    parser.add_argument("--seed", type=int, default=32)
    args = parser.parse_args()
    if args.per_voice < 2:
        parser.error(f"--per-voice must be at least 2, got {args.per_voice}")
    audio = args.out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    (args.out / "phrases.txt").write_text("\n".join(MENU + DIGITS) + "\n")
    rows = []
    for n, (voice, engine) in enumerate(VOICES.items()):
        utts = tuple(Utt(voice, f"{voice}-{i:03d}", text, str((audio / f"{voice}-{i:03d}.wav").resolve()),
                         f"{args.seed}-{voice}-{i}")
                     for i, text in enumerate(plan(args.per_voice, args.seed + n)))
        todo = tuple(u for u in utts if wav_duration(u.path) is None)  # resumable
        if todo:
            synth_chunk((engine, todo, 0.2))
        for u in utts:
            seconds = wav_duration(u.path)
            if seconds is None:
                print(f"make_commands: {voice} failed on {u.uid} ({u.text!r}); skipped")
                continue
            rows.append({"audio": u.path, "text": u.text, "duration": round(seconds, 3), "voice": voice})
        print(f"make_commands: {voice}: {sum(r['voice'] == voice for r in rows)} utterances")
    (args.out / "commands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
