#!/bin/sh
# Ingestion throughput: generates a 1,000-file folder and times `etna ingest` on it (BM25 only,
# then a second, incremental run that should do no work). Usage: bench/ingest/run.sh [ETNA] [FILES]
set -eu
ETNA=${1:-build/etna}
FILES=${2:-1000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 "$(dirname "$0")/gen_corpus.py" "$WORK/docs" --files "$FILES"
echo "corpus: $FILES files, $(du -sh "$WORK/docs" | cut -f1)"
"$ETNA" ingest "$WORK/docs" --collection bench --data "$WORK/data"
echo "second run (incremental):"
"$ETNA" ingest "$WORK/docs" --collection bench --data "$WORK/data"
"$ETNA" search --collection bench --data "$WORK/data" "pressure kernel storage" -k 3 | head -6
