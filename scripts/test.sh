#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite (lint, types, tests).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# The viewer's browser tests drive Debian's Chromium (never a downloaded browser build).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing chromium (browser tests)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "ERROR: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get)." >&2
    echo "       Install Debian's chromium package (apt-get install chromium), then re-run." >&2
    exit 1
  fi
fi

# The real Lunary server (tests/e2e/real) is started by the tests themselves with
# ../shared/lunary-server/server.sh, which installs PostgreSQL (apt-get) and bun (npm).
# It needs curl and npm; benchmarks/langchain_instructions.py (run tiny by the tests)
# needs valgrind: install them here when they are missing.
missing=()
for tool in curl npm valgrind; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing ${missing[*]} (real Lunary server tests, instruction counts)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "ERROR: ${missing[*]} missing; the tests need them (apt-get install ${missing[*]})." >&2
    exit 1
  fi
fi

echo "== ruff"
.venv/bin/ruff check lunatrace tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

# LangChain and the provider clients: their integrations' tests again, against the OLDEST
# releases of the supported ranges (pyproject's "langchain", "openai" and "anthropic"
# extras), in a venv of their own.
LANGCHAIN_OLDEST=("langchain-core==1.0.0" "langchain==1.0.0" "langgraph==1.0.0")
PROVIDERS_OLDEST=("openai==1.99.1" "anthropic==0.60.0")
echo "== pytest (integrations, oldest supported: ${LANGCHAIN_OLDEST[*]} ${PROVIDERS_OLDEST[*]})"
if [ ! -x .venv-oldest/bin/python ]; then
  "$PYTHON" -m venv .venv-oldest
fi
.venv-oldest/bin/python -m pip install -q --upgrade pip
.venv-oldest/bin/python -m pip install -q -e . pytest pytest-asyncio pytest-timeout \
  "${LANGCHAIN_OLDEST[@]}" "${PROVIDERS_OLDEST[@]}"
.venv-oldest/bin/python -m pytest -q -p no:cacheprovider $(ls tests/integrations/test_langchain_*.py \
  tests/integrations/test_openai_*.py tests/integrations/test_anthropic_*.py 2>/dev/null)
