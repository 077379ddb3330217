#!/usr/bin/env bash
# Pause or resume a running scripts/make_corpus.py, its pool workers included (for a quiet
# measurement beside a long synthesis):  bash scripts/pause_corpus.sh stop|cont
# Stopping the parent alone is not enough: the pool's task queue holds many chunks already, and
# its workers go on synthesising them for minutes.
set -euo pipefail
case "${1:-}" in
    stop) signal=STOP ;;
    cont) signal=CONT ;;
    *) echo "usage: $0 stop|cont (got '${1:-}')" >&2; exit 2 ;;
esac
parents=$(pgrep -f "scripts/make_corpus.py" || true)
[ -n "$parents" ] || { echo "$0: no make_corpus.py is running" >&2; exit 1; }
for p in $parents; do
    kill -"$signal" "$p" $(pgrep -P "$p" || true)
done
echo "$signal: make_corpus.py $(echo $parents) and its workers"
