"""The lab's guest image: a small Debian 12 cloud image (cloud-init, openssh-server, a kernel,
extlinux, serial console) built from Debian's packages with mmdebstrap.

    python3 -m lab.guest_image          # build if missing; prints the qcow2 path
    python3 -m lab.guest_image --path   # print the path it would have, build nothing

The image is cached outside the repo in ${XDG_CACHE_HOME:-~/.cache}/cephkvm-images/, named by
a hash of its recipe (this file's RECIPE), so a rebuild happens only when the recipe changes
and every later call returns at once; `lab-guest.qcow2` there links to the current build (the
lab stack's template). Only Debian's mirror is needed. Needs root (loop device + mount).

Layout: an MBR disk with one ext4 partition labelled `root` (grown by cloud-init's growpart on
first boot), extlinux in its boot sector, the kernel on ttyS0. cloud-init looks only for a
NoCloud seed, so boot does not wait for cloud metadata services that do not exist here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
RECIPE = {
    "suite": "bookworm",
    "variant": "apt",
    "packages": [
        "linux-image-cloud-amd64",
        "initramfs-tools",
        "systemd-sysv",
        "udev",
        "dbus",
        "cloud-init",
        "cloud-guest-utils",
        "openssh-server",
        "ifupdown",
        "iproute2",
        "netbase",
        "sudo",
        "e2fsprogs",
        "extlinux",
        "syslinux-common",
        "qemu-guest-agent",
    ],
    "disk_mib": 2048,
    "layout": 4,  # bump when the hook or disk layout below changes
}
PART_OFFSET = 1024 * 1024  # the root partition starts at 1 MiB

# Runs inside the new root (mmdebstrap --customize-hook, $1 = root dir).
CUSTOMIZE = r"""
set -eu
root="$1"
kernel=$(cd "$root/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=$(cd "$root/boot" && ls initrd.img-* | sort -V | tail -1)
mkdir -p "$root/boot/extlinux"
cat > "$root/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 0
PROMPT 0
SERIAL 0 115200
LABEL debian
  KERNEL /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=LABEL=root ro console=ttyS0,115200n8 net.ifnames=0 quiet
EOF
echo 'LABEL=root / ext4 defaults,errors=remount-ro 0 1' > "$root/etc/fstab"
echo localhost > "$root/etc/hostname"
# No `locales` package in the image: cloud-init's locale module would fail (update-locale).
printf 'datasource_list: [ NoCloud, None ]\nlocale: false\n' \
  > "$root/etc/cloud/cloud.cfg.d/90-cephkvm.cfg"
printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' \
  > "$root/etc/network/interfaces"
rm -f "$root/etc/ssh/ssh_host_"*  # each guest makes its own (cloud-init ssh module)
rm -f "$root/etc/machine-id" && touch "$root/etc/machine-id"
chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists/"*
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "cephkvm-images"


def recipe_key() -> str:
    text = json.dumps({"recipe": RECIPE, "hook": CUSTOMIZE}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_path() -> Path:
    return cache_dir() / f"debian-12-cephkvm-{recipe_key()}.qcow2"


# sfdisk, mkfs.ext4 and losetup live in sbin, which a user's PATH may lack.
ENV = {**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, env=ENV, **kw)


def build(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cephkvm-image-", dir=dest.parent))
    try:
        rootfs, raw = work / "root", work / "disk.raw"
        t0 = time.monotonic()
        _run(
            "mmdebstrap",
            "--quiet",
            f"--variant={RECIPE['variant']}",
            "--include=" + ",".join(RECIPE["packages"]),
            "--customize-hook=" + f'sh -c {_q(CUSTOMIZE)} sh "$1"',
            RECIPE["suite"],
            rootfs,
            MIRROR,
        )
        print(f"guest image: root tree in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        _make_disk(rootfs, raw)
        tmp = dest.with_suffix(".tmp")
        _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, tmp)
        os.replace(tmp, dest)
        print(f"guest image: {dest} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _make_disk(rootfs: Path, raw: Path) -> None:
    """MBR + one bootable ext4 partition filled from rootfs, extlinux installed in it.
    mke2fs -d fills the filesystem without mounting; extlinux needs it mounted, which
    happens in a private mount namespace so nothing is left mounted on the machine."""
    size = RECIPE["disk_mib"] * 1024 * 1024
    with open(raw, "wb") as f:
        f.truncate(size)
    _write_partition_table(raw, size)
    fs_kib = (size - PART_OFFSET) // 1024
    # syslinux 6.04 cannot read ext4's 64bit layout or checksum seeds: leave them out.
    _run(
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "root",
        "-O",
        "^64bit,^metadata_csum_seed",
        "-E",
        f"offset={PART_OFFSET}",
        "-d",
        rootfs,
        raw,
        f"{fs_kib}k",
    )
    script = (
        'set -eu; dev=$(losetup -f --show -o "$2" --sizelimit "$3" "$1"); '
        'trap \'losetup -d "$dev"\' EXIT; mnt=$(mktemp -d); mount "$dev" "$mnt"; '
        '"$4/usr/bin/extlinux" --install "$mnt/boot/extlinux" >/dev/null; umount "$mnt"; '
        'rmdir "$mnt"'
    )
    _run(
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        raw,
        PART_OFFSET,
        size - PART_OFFSET,
        rootfs,
    )
    mbr = rootfs / "usr/lib/syslinux/mbr/mbr.bin"
    _run("dd", f"if={mbr}", f"of={raw}", "bs=440", "count=1", "conv=notrunc", "status=none")


def _write_partition_table(raw: Path, size: int) -> None:
    """An MBR with one bootable Linux partition from 1 MiB to the end (what
    `sfdisk` would write; written here so the build needs no fdisk package)."""
    import struct

    start, count = PART_OFFSET // 512, (size - PART_OFFSET) // 512
    chs = bytes([0xFE, 0xFF, 0xFF])  # "use LBA"
    entry = bytes([0x80]) + chs + bytes([0x83]) + chs + struct.pack("<II", start, count)
    with open(raw, "r+b") as f:
        f.seek(446)
        f.write(entry + bytes(48) + b"\x55\xaa")


LATEST = "lab-guest.qcow2"  # a stable name for stack configs: links to the current build


def ensure() -> Path:
    path = image_path()
    if not path.exists():
        build(path)
    link = path.parent / LATEST
    if not link.is_symlink() or os.readlink(link) != path.name:
        tmp = link.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path.name)
        os.replace(tmp, link)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", action="store_true", help="print the cached path only")
    args = parser.parse_args(argv)
    print(image_path() if args.path else ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
