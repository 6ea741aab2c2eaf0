#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks lint, types and the
# generated compliance table, then runs every mocha suite and ends with a line
# "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."

# Dependencies: npm packages (no install scripts download anything), redis-server, chromium, coturn and prosody from Debian.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null 2>&1 || npm install --no-audit --no-fund >/dev/null
fi
# Another package manager (unattended-upgrades, a second test run) may hold the apt/dpkg lock: apt-get
# waits for it up to 10 minutes (DPkg::Lock::Timeout, apt >= 1.9.11). If the install still fails, stop
# here and say what to run, rather than go on and fail later with a missing browser.
# `apt-get update` does not wait for the lists lock (DPkg::Lock::Timeout is the dpkg lock only): retry it.
apt_update() {
  local SUDO=$1 i err
  for ((i = 0; i < 120; i++)); do
    if err=$($SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq 2>&1 >/dev/null); then return 0; fi
    case "$err" in *"Could not get lock"* | *"Unable to lock"*) ;; *) echo "$err" >&2; return 1 ;; esac
    [ "$i" = 0 ] && echo "waiting for another apt/dpkg process to release its lock…"
    sleep 5
  done
  echo "$err" >&2
  return 1
}
apt_install() {
  local pkg=$1 SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "installing $pkg (Debian package; waits for the apt/dpkg lock if another process holds it)…"
  if ! { apt_update "$SUDO" &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$pkg" >/dev/null; }; then
    echo "FAILED: could not install $pkg. If another apt/dpkg process holds the lock, wait for it; then run:" >&2
    echo "  ${SUDO:+sudo }apt-get update && ${SUDO:+sudo }apt-get install -y $pkg" >&2
    echo "and npm test again." >&2
    exit 1
  fi
}
if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
# Debian's Chromium for conformance/web/browser.test.ts (playwright-core drives it; no browser is ever downloaded).
if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
# Debian's coturn for conformance/xmpp/extdisco.test.ts (TURN credentials from XEP-0215 tried on a real TURN server).
if ! command -v turnserver >/dev/null 2>&1; then apt_install coturn; fi
# Debian's Prosody for conformance/xmpp/s2s-prosody.test.ts (a real remote server for federation; started per test, loopback only).
if ! command -v prosody >/dev/null 2>&1; then apt_install prosody; fi

failed_checks=0
step() {
  local name=$1; shift
  if "$@" > .test-step.log 2>&1; then echo "ok: $name"; else echo "FAILED: $name"; cat .test-step.log; failed_checks=$((failed_checks + 1)); fi
  rm -f .test-step.log
}
step "lint (incl. layer rule)" npx eslint .
step "types" npx tsc --noEmit -p .
step "formatting (prettier --check; .prettierignore says what is left out)" npx prettier --check .
step "docs/compliance.md is current" node --import tsx scripts/compliance.ts --check

mkdir -p .test-artifacts
# TLS is verified in every test: each test node serves a certificate signed by
# the suite's test CA (conformance/test-ca.ts), which every client trusts, and
# only it. Certificate checks stay on for the whole run: a certificate problem must fail a test.
# The suites; `npx mocha some.test.ts` alone runs just that file (the list is here, not in .mocharc.json).
SPECS=("broker/test/**/*.test.ts" "adapters/**/test/**/*.test.ts" "storage/test/**/*.test.ts" "cluster/test/**/*.test.ts" "metrics/test/**/*.test.ts" "bin/test/**/*.test.ts" "conformance/**/*.test.ts")
if [ "$#" -eq 0 ]; then set -- "${SPECS[@]}"; fi
# Two files at a time (mocha --parallel, one worker process each): most of a test's time is spent waiting
# on sockets and timers, so two workers on this 2-core machine finish the suite in about half the time.
# Every test starts its own nodes on free ports with its own data directories; PARLEY_TEST_JOBS=1 runs serially.
jobs=${PARLEY_TEST_JOBS:-2}
if [ "$jobs" -gt 1 ]; then par=(--parallel --jobs "$jobs"); else par=(); fi
npx mocha "${par[@]}" --reporter spec "$@" 2>&1 | tee .test-artifacts/mocha.log
mocha_rc=${PIPESTATUS[0]}

passing=$(grep -Eo '^ +[0-9]+ passing' .test-artifacts/mocha.log | grep -Eo '[0-9]+' | tail -1)
failing=$(grep -Eo '^ +[0-9]+ failing' .test-artifacts/mocha.log | grep -Eo '[0-9]+' | tail -1)
pending=$(grep -Eo '^ +[0-9]+ pending' .test-artifacts/mocha.log | grep -Eo '[0-9]+' | tail -1)
passing=${passing:-0}; failing=${failing:-0}; pending=${pending:-0}
failing=$((failing + failed_checks))
if [ "$mocha_rc" -ne 0 ] && [ "$failing" -eq 0 ]; then failing=1; fi
passing=$((passing + 4 - failed_checks))
echo "${passing} passed, ${failing} failed, ${pending} skipped"
[ "$failing" -eq 0 ]
