#!/usr/bin/env bash
# Run every test tier and end with a one-line summary. A tier that cannot run is a failure
# and says why; nothing is skipped quietly.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
declare -A status

tier() {  # tier NAME PYTEST-ARGS...
    local name=$1; shift
    echo "=== $name tier"
    local out rc
    out=$(mktemp)
    "$PY" -m pytest -q -p no:cacheprovider --durations=10 "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    local counts
    counts=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$out" | tail -1 | tr -d '=' | xargs)
    rm -f "$out"
    if [ "$rc" = 0 ]; then status[$name]="ok ($counts)"; else status[$name]="FAILED ($counts)"; fi
}

echo "=== lint"
CODE=(providers components lab tests bench scripts __main__.py)
if ! .venv/bin/ruff check --config scripts/ruff.toml "${CODE[@]}"; then
    status[lint]="FAILED (ruff check --config scripts/ruff.toml)"
elif ! .venv/bin/ruff format --check --config scripts/ruff.toml "${CODE[@]}"; then
    status[lint]="FAILED (ruff format --check: run ruff format --config scripts/ruff.toml)"
else
    status[lint]="ok"
fi

tier unit tests/unit

engine_reason=""
if ! pulumi version >/dev/null 2>&1; then
    engine_reason="the Pulumi CLI is missing from .tools/bin (run make setup; see scripts/setup-tools.sh)"
fi
if [ -n "$engine_reason" ]; then
    echo "!!! ENGINE TIER DID NOT RUN: $engine_reason"
    status[engine]="NOT RUN: $engine_reason"
else
    tier engine tests/engine
fi

if [ "$(id -u)" != 0 ]; then
    status[lab]="NOT RUN: the lab needs root"
    echo "!!! LAB TIER DID NOT RUN: the lab needs root"
else
    echo "=== lab up"
    trap 'echo "=== lab down"; bash scripts/stack.sh forget lab; python3 -m lab down' EXIT
    if python3 -m lab up; then
        tier lab tests/lab --deselect tests/lab/test_lab_nodes.py::test_down_leaves_nothing_then_up_again
        # Last, because it wipes the lab: down leaves nothing, and up works again.
        CKLAB_TEST_CYCLE=1 tier lab-cycle tests/lab/test_lab_nodes.py::test_down_leaves_nothing_then_up_again
    else
        status[lab]="FAILED: python -m lab up failed"
    fi
fi

summary="lint: ${status[lint]}; unit: ${status[unit]}; engine: ${status[engine]}; lab: ${status[lab]:-NOT RUN}"
summary+="; lab down/up cycle: ${status[lab-cycle]:-NOT RUN}"
bad=0
case "$summary" in *FAILED*|*"NOT RUN"*) bad=1 ;; esac
# The lab goes down (trap) before the summary, so the summary is the last line.
trap - EXIT
if [ "$(id -u)" = 0 ]; then echo "=== lab down"; bash scripts/stack.sh forget lab; python3 -m lab down; fi
echo "SUMMARY $([ $bad = 0 ] && echo PASS || echo FAIL): $summary"
exit $bad
