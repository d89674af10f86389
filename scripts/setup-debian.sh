#!/usr/bin/env bash
# Debian packages the lab and the providers need. Idempotent; fast when all are present.
set -euo pipefail

PACKAGES=(
  openssh-server openssh-client iproute2 iputils-ping util-linux kmod procps psmisc
  ceph ceph-mon ceph-mgr ceph-osd ceph-mds ceph-common ceph-fuse udev  # ceph-volume needs udevadm
  libvirt-daemon libvirt-daemon-system libvirt-clients libvirt-dev
  qemu-system-x86 qemu-utils cloud-image-utils genisoimage
  bridge-utils netplan.io mmdebstrap pkg-config gcc python3-dev
  ceph-mgr-dashboard  # cephkvm:ceph.dashboard
  chromium chromium-driver  # the lab tier's browser tests (tests/lab/browser.py)
  # cephkvm:cockpit on the runbook lab (lab nodes share this machine's /usr and reach no
  # mirror, so NodePrep finds them installed instead of running apt-get there)
  cockpit-ws cockpit-bridge cockpit-system cockpit-machines libvirt-dbus
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "debian packages: all present"; exit 0; }

echo "debian packages: installing ${missing[*]}"
# Never let package scripts start daemons on this machine: servers run only inside lab nodes.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created_policy=1
fi
trap '[ $created_policy = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
