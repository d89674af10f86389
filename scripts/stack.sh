#!/usr/bin/env bash
# stack.sh up|preview|destroy|recover|forget STACK: the Pulumi CLI on one of stacks/, with
# the environment the Makefile exports (local backend, no plugin downloads).
# CEPHKVM_PROJECT: run in that copy of the project instead of this one (tests).
set -euo pipefail
cd "${CEPHKVM_PROJECT:-$(dirname "$0")/..}"
action=${1:-} stack=${2:-}
[ -n "$stack" ] || { echo "usage: stack.sh up|preview|destroy|recover|forget STACK" >&2; exit 2; }
mkdir -p .state
# The lab stack's secrets are a test's (its salt in stacks/Pulumi.lab.yaml is for this
# passphrase); every other stack needs the operator's own.
if [ "$stack" = lab ]; then export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-cephkvm-lab}"; fi
use_stack() { pulumi stack select "$stack" --create --non-interactive >/dev/null; }
case "$action" in
  up)      use_stack; pulumi up --yes --skip-preview --non-interactive --stack "$stack" ;;
  preview) use_stack; pulumi preview --non-interactive --stack "$stack" ;;
  destroy) use_stack; pulumi destroy --yes --non-interactive --stack "$stack" ;;
  # After a killed run (kill -9, a lost terminal): drop its lock, then read every resource
  # back from the nodes and forget the operations it left pending. Creates are idempotent
  # and adopt only what this stack made, so the next `up` finishes them.
  recover)
    pulumi cancel --yes --non-interactive --stack "$stack" 2>/dev/null || true
    pulumi refresh --yes --skip-preview --non-interactive --clear-pending-creates --stack "$stack" ;;
  # The lab's machines are gone after `lab down`: drop the state that described them.
  forget)  pulumi stack rm --yes --force --preserve-config --non-interactive "$stack" >/dev/null 2>&1 || true ;;
  *) echo "usage: stack.sh up|preview|destroy|recover|forget STACK" >&2; exit 2 ;;
esac
