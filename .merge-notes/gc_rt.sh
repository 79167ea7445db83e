#!/bin/bash
# The domain modules call what they are given `ports` (never `rt`, which is the Runtime).
cd "${1:-/work/wt/graphcore}"
for f in shared/recordfetch.py shared/archiver.py shared/reconcile.py shared/lifecycle.py shared/status.py shared/usage/sync.py shared/usage/health.py shared/usage/watermark.py; do
  [ -f "$f" ] && sed -i -E 's/\brt\b/ports/g; s/\bself\.rt\b/self.ports/g' "$f"
done
