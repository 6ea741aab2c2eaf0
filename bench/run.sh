#!/usr/bin/env bash
# Benchmark runner wrapper: raise the open-file limit (10,000 sessions need
# ~10,000 descriptors on each side; servers and generators inherit it), then
# run bench/run.ts. Not part of `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node --import tsx bench/run.ts "$@"
