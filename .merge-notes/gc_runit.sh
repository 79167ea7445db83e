#!/bin/bash
# run the given integration test files one at a time
cd /work/wt/graphcore
for f in "$@"; do
  start=$(date +%s)
  timeout 900 .venv/bin/python -m pytest tests/integration/$f -x -q -p no:cacheprovider > /tmp/gc_it_$f.log 2>&1
  echo "$f rc=$? $(( $(date +%s) - start ))s $(tail -1 /tmp/gc_it_$f.log)" >> /tmp/gc_it_summary.log
done
