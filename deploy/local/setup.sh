#!/usr/bin/env bash
# Installs everything ringwatch needs on a fresh Debian/Ubuntu machine, then resolves the local
# stack's jars. Safe to run again: each step is skipped when already done.
#   - Java 17+ and Maven (apt-get, when missing; needs root or sudo)
#   - Python 3.11+ virtualenv in .venv with ringwatch and its development tools
#     and PyTorch + PyTorch Geometric for the GNN (several GB, CPU is enough;
#     RINGWATCH_WITH_GNN=0 leaves them out: then the GNN tests skip and no model can be trained)
#   - Neo4j, GDS, Browser and Kafka jars from Maven Central (cached in ~/.m2 and the stack home)
#   - Chromium, Node.js and tests/browser's npm packages (playwright-core), for the Neo4j
#     Browser end-to-end test (tests/integration/test_browser_e2e.py)
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fail "need root (or sudo) to run: $*"; fi
}

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

packages=()
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  packages+=(openjdk-17-jdk-headless)
fi
command -v mvn >/dev/null 2>&1 || packages+=(maven)
command -v python3 >/dev/null 2>&1 || packages+=(python3 python3-venv)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
# The Browser end-to-end test drives Debian's Chromium with playwright-core (no browser download).
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ ${#packages[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "please install: ${packages[*]} (no apt-get here)"
  say "installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || fail "Python 3.11 or newer is required (found $(python3 --version 2>&1))"

extras="dev,gnn"
[ "${RINGWATCH_WITH_GNN:-1}" = "0" ] && extras="dev"
# Reinstall only when the dependency list or the extras change.
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras/,/-}"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { say "creating .venv"; python3 -m venv .venv; }
  say "installing Python packages (.[$extras])"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# npm ci only when the lock file changed since the last install.
browser_stamp="tests/browser/node_modules/.installed-$(sha256sum tests/browser/package-lock.json | cut -c1-16)"
if [ ! -f "$browser_stamp" ]; then
  say "installing the browser test's npm packages (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
  touch "$browser_stamp"
fi

say "resolving the local stack's jars from Maven Central"
.venv/bin/ringwatch stack fetch
say "setup complete"
