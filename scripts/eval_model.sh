#!/usr/bin/env bash
# Score a model the way the model card does: (a) test, (b) heldout, (c) the real-voice dev set, and
# (a) for the Kokoro voices (kokoro_test.jsonl, when make_corpus.py --kokoro-test made it), and
# the games' held-out roles (GAMES_DIR/<game>/test.jsonl, when scripts/import_games.py made them),
# 100 ms chunks through the streaming engine, one thread; beam + LM, greedy, and int8 greedy.
#
#   bash scripts/eval_model.sh MODEL OUT_DIR [CORPUS_DIR] [DEVSET_DIR] [GAMES_DIR]
#
# CORPUS_DIR (default data/corpus) comes from scripts/make_corpus.py, DEVSET_DIR (default
# data/devset) from scripts/make_devset.py, GAMES_DIR (default data/games) from import_games.py. OUT_DIR receives model_eval_{beam,greedy,greedy_int8}.json
# (the docs/ files of the model card), hyps_{beam,greedy}.jsonl and model_eval.png.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 MODEL OUT_DIR [CORPUS_DIR] [DEVSET_DIR]" >&2
    exit 2
fi
model=$1; out=$2; corpus=${3:-data/corpus}; devset=${4:-data/devset}; games=${5:-data/games}
sets=("$corpus/test.jsonl" "$corpus/heldout.jsonl" "$devset/dev.jsonl")
for f in "$model" "${sets[@]}"; do
    [ -f "$f" ] || { echo "$0: $f does not exist (expected a checkpoint and the three manifests)" >&2; exit 2; }
done
if [ -f "$corpus/kokoro_test.jsonl" ]; then sets+=("$corpus/kokoro_test.jsonl"); fi
for game in fotaq bass; do
    if [ -f "$games/$game/test.jsonl" ]; then sets+=("$games/$game/test.jsonl"); fi
done
mkdir -p "$out"
manifests=()
for f in "${sets[@]}"; do manifests+=(--manifest "$f"); done
run() {  # NAME, then eval options
    local name=$1; shift
    echo "== $name" >&2
    python -m streamasr eval --model "$model" "${manifests[@]}" --chunk-ms 100 --threads 1 --json "$@" \
        > "$out/model_eval_$name.json"
}
run beam --method beam --hyps "$out/hyps_beam.jsonl" --plot "$out/model_eval.png"
run greedy --method greedy --hyps "$out/hyps_greedy.jsonl"
run greedy_int8 --method greedy --quantize
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("beam", "greedy", "greedy_int8"):
    report = json.loads((out / f"model_eval_{name}.json").read_text())
    cells = [f"{Path(m).parent.name}/{Path(m).stem} {r['all']['wer'] * 100:5.1f}/{r['all']['cer'] * 100:4.1f}" for m, r in report.items()]
    print(f"{name:12s} WER/CER  " + "   ".join(cells))
PY
