# cephkvm: `make lab` brings the lab up and converges it; `make test` runs every tier.
SHELL := /bin/bash
ROOT := $(CURDIR)
PY := $(ROOT)/.venv/bin/python

# The language host runs the first python3 on PATH: the project venv.
export PATH := $(ROOT)/.tools/bin:$(ROOT)/.venv/bin:$(PATH)
export PULUMI_HOME := $(ROOT)/.tools/pulumi-home
# The Python language host built here (v3.68) ignores runtime.options.virtualenv.
export PULUMI_PYTHON_CMD := $(PY)
export PULUMI_BACKEND_URL ?= file://$(ROOT)/.state
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
# No passphrase here: scripts/stack.sh gives the lab stack its test one, and a real stack
# made from this environment must bring its own (PULUMI_CONFIG_PASSPHRASE).

.PHONY: setup debian venv tools guest-image lab lab-down lab-status test bench recover
setup: debian venv tools guest-image

debian:
	@bash scripts/setup-debian.sh

venv: .venv/.stamp
.venv/.stamp: requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

tools:
	@bash scripts/setup-tools.sh

# The lab's Debian cloud image (lab/guest_image.py), cached by recipe in ~/.cache/cephkvm-images.
guest-image: debian
	@if [ "$$(id -u)" = 0 ]; then python3 -m lab.guest_image >/dev/null; \
	else echo "guest image: building it needs root (loop device); skipped"; fi

lab: setup
	$(PY) -m lab up
	bash scripts/stack.sh up lab

lab-down:
	-@test -x $(PY) && bash scripts/stack.sh forget lab
	python3 -m lab down

lab-status:
	python3 -m lab status

# After a killed `pulumi up` (see README, Troubleshooting): make recover STACK=prod
recover: venv tools
	@test -n "$(STACK)" || { echo "usage: make recover STACK=<stack>"; exit 2; }
	bash scripts/stack.sh recover $(STACK)

test: setup
	bash scripts/test.sh

bench: setup
	$(PY) bench/preview_and_connections.py
