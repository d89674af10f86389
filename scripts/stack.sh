#!/usr/bin/env bash
# stack.sh up|preview|destroy|forget STACK: the Pulumi CLI on one of stacks/, with the
# environment the Makefile exports (local backend, no plugin downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 stack=$2
mkdir -p .state
use_stack() { pulumi stack select "$stack" --create --non-interactive >/dev/null; }
case "$action" in
  up)      use_stack; pulumi up --yes --skip-preview --non-interactive --stack "$stack" ;;
  preview) use_stack; pulumi preview --non-interactive --stack "$stack" ;;
  destroy) use_stack; pulumi destroy --yes --non-interactive --stack "$stack" ;;
  # The lab's machines are gone after `lab down`: drop the state that described them.
  forget)  pulumi stack rm --yes --force --preserve-config --non-interactive "$stack" >/dev/null 2>&1 || true ;;
  *) echo "usage: stack.sh up|preview|destroy|forget STACK" >&2; exit 2 ;;
esac
