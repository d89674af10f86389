"""A VM's files on shared storage (CephFS in production), for CloudVM: the template
imported once into templates/ under its content hash, the qcow2 overlay in virtualmachines/,
and the NoCloud seed in config/ made from the cloud-init inputs."""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile

import yaml

from providers import passwords
from providers.errors import Failure


def paths(p: dict) -> dict:
    """The VM's files; the template's is the one create imported (kept in state)."""
    root, name = p["storage"], p["name"]
    return {
        "template": p.get("template_path") or "",
        "disk": posixpath.join(root, "virtualmachines", name + ".qcow2"),
        "seed": posixpath.join(root, "config", name + "-seed.iso"),
    }


def snapshot_dirs(storage: str, vm: str, name: str) -> tuple[str, str]:
    """The CephFS snapshots (VM@NAME) of the directories holding the VM's disk and seed."""
    return tuple(
        posixpath.join(storage, d, ".snap", f"{vm}@{name}") for d in ("virtualmachines", "config")
    )


def template_path(p: dict, digest: str) -> str:
    """templates/<name>-<sha256 prefix>.qcow2: two images of one file name never share a
    template, and an image changed at its source becomes a new template."""
    src = p["template"]["source"]
    stem = posixpath.basename(src.split("?", 1)[0])
    stem = re.sub(r"\.(qcow2|img|raw)$", "", stem) or "template"
    return posixpath.join(p["storage"], "templates", f"{stem}-{digest[:16]}.qcow2")


def paths_out(paths: dict) -> dict:
    return {
        "template_path": paths["template"],
        "disk_path": paths["disk"],
        "seed_path": paths["seed"],
    }


def make_dirs(node, storage: str) -> None:
    dirs = [posixpath.join(storage, d) for d in ("templates", "virtualmachines", "config")]
    if not node.ok(["test", "-d", dirs[0], "-a", "-d", dirs[1], "-a", "-d", dirs[2]]):
        node.run(["mkdir", "-p", *dirs], change=True)


def import_template(node, p: dict) -> str:
    """The image, converted to qcow2 into templates/ under its content hash, once: a
    template present is never rewritten (VMs' overlays depend on it byte for byte). An
    image that names a backing or data file is refused: it would pull that file of the
    node into every VM made from it. Returns the template's path."""
    template, storage = p["template"], p["storage"]
    src, fetched = template["source"], None
    if src.startswith(("http://", "https://")):
        fetched = _temp(node, posixpath.join(storage, "templates", ".download"))
        node.run(
            ["curl", "-fsSL", "--proto", "=https,http", "-o", fetched, src],
            change=True,
            timeout=3600,
        )
        src = fetched
    try:
        digest = _digest(node, src, template)
        dest = template_path(p, digest)
        if not node.ok(["test", "-s", dest]):
            fmt = _image_format(node, src, template["source"])
            tmp = _temp(node, dest)
            node.run(
                ["qemu-img", "convert", "-f", fmt, "-O", "qcow2", src, tmp],
                change=True,
                timeout=3600,
            )
            node.run(["mv", "-f", tmp, dest], change=True)
        return dest
    finally:
        if fetched:
            node.run(["rm", "-f", "--", fetched], change=True)


def _temp(node, prefix: str) -> str:
    """A new file prefix.NODE.XXXXXX.part (mktemp: never a name another writer has); what
    a killed run of this node left under that prefix goes first."""
    script = 'rm -f -- "$1".*.part && mktemp "$1.XXXXXX.part"'
    return node.run(["sh", "-c", script, "sh", f"{prefix}.{node.name}"], change=True).stdout.strip()


IDENTITY = "%d %i %s %.9Y %.9Z"  # device, inode, size, mtime and ctime (ns)


def _digest(node, src: str, template: dict) -> str:
    """The image's SHA-256, once per node and provider run (one `up`) while the file stays
    the same one: the tenth VM of an image need not read it again; a rewrite changes ctime."""
    ident = node.run(["stat", "-L", "-c", IDENTITY, "--", src], check=False)
    digest = (
        node.fact(f"sha256 {src} {ident.stdout.strip()}", lambda: _sha256(node, src))
        if ident.exit_code == 0
        else _sha256(node, src)
    )
    if template.get("sha256") and digest != template["sha256"].lower():
        raise Failure(
            f"template {template['source']}: its SHA-256 is {digest or '?'}, "
            f"the stack expects {template['sha256']}; not importing it"
        )
    return digest


def _sha256(node, src: str) -> str:
    """openssl's SHA-256 uses the CPU's SHA extensions (0.44 s against sha256sum's 1.44 s
    for the lab's 480 MiB image); sha256sum where openssl is missing."""
    script = 'openssl dgst -sha256 -r "$1" 2>/dev/null || sha256sum -- "$1"'
    out = node.run(["sh", "-c", script, "sh", src], timeout=3600).stdout.split()
    return out[0] if out else ""


def _image_format(node, src: str, source: str) -> str:
    info = image_info(node, src)
    data_file = (info.get("format-specific") or {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        raise Failure(
            f"template {source}: the image refers to another file "
            f"({info.get('backing-filename') or data_file}); a cloud image "
            "must stand alone. Flatten it (qemu-img convert) first."
        )
    return info.get("format") or "raw"


def make_overlay(node, paths: dict, disk_gib: int) -> None:
    if node.ok(["test", "-e", paths["disk"]]):
        return
    tmp = paths["disk"] + ".part"
    # Current qemu-img refuses a backing file without its format (-F).
    node.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            paths["template"],
            tmp,
            f"{disk_gib}G",
        ],
        change=True,
    )
    node.run(["mv", "-f", tmp, paths["disk"]], change=True)


def restore_disk(node, p: dict) -> dict:
    """The VM's overlay as a copy of another VM's overlay in a snapshot (template:
    {snapshot: VM@NAME}), backed by the same template, grown to disk_gib. Checked before
    anything is written: the snapshot exists, and fits in disk_gib. Returns the paths."""
    vm, name = p["template"]["snapshot"].split("@", 1)
    src = posixpath.join(snapshot_dirs(p["storage"], vm, name)[0], vm + ".qcow2")
    if not node.ok(["test", "-f", src]):
        raise Failure(
            f"{p['name']}: snapshot {vm}@{name} does not exist ({src} is missing); "
            f"list it in {vm}'s snapshots and run up, or name another. Nothing was changed."
        )
    info = _fits(node, p, src, f"snapshot {vm}@{name}")
    found = paths({**p, "template_path": info.get("full-backing-filename") or ""})
    if not node.ok(["test", "-e", found["disk"]]):
        _copy_in(node, p, ["cp", "--sparse=always", "--", src], found["disk"], info)
    return found


def restore_backup(node, p: dict) -> dict:
    """The VM's disk as a standalone copy of a backup (template: {backup: FILE}): the
    backup's chain read through, so it depends on no template. Checked like restore_disk."""
    src = p["template"]["backup"]
    if not node.ok(["test", "-f", src]):
        raise Failure(
            f"{p['name']}: backup {src} does not exist on {p['node']}; name a file the "
            "source VM's backups output lists. Nothing was changed."
        )
    info = _fits(node, p, src, f"backup {src}")
    found = paths({**p, "template_path": ""})
    if not node.ok(["test", "-e", found["disk"]]):
        copy = ["qemu-img", "convert", "-O", "qcow2", "--", src]
        _copy_in(node, p, copy, found["disk"], info)
    return found


def image_info(node, path: str) -> dict:
    """`qemu-img info` of an image, also one a running VM holds open (-U)."""
    return json.loads(node.run(["qemu-img", "info", "-U", "--output=json", "--", path]).stdout)


def _fits(node, p: dict, src: str, what: str) -> dict:
    info = image_info(node, src)
    if int(info["virtual-size"]) > p["disk_gib"] << 30:
        raise Failure(
            f"{p['name']}: {what} holds a {int(info['virtual-size']) / (1 << 30):g} GiB "
            f"disk; set disk_gib to at least {-(-int(info['virtual-size']) // (1 << 30))}. "
            "Nothing was changed."
        )
    return info


def _copy_in(node, p: dict, copy: list, disk: str, info: dict) -> None:
    """copy + [a partial file], grown to disk_gib, then in place under the disk's name."""
    tmp = disk + ".part"
    node.run([*copy, tmp], change=True, timeout=3600)
    if int(info["virtual-size"]) < p["disk_gib"] << 30:
        node.run(["qemu-img", "resize", "-q", tmp, f"{p['disk_gib']}G"], change=True)
    node.run(["mv", "-f", tmp, disk], change=True)


def cloud_config(p: dict) -> dict:
    """The #cloud-config document from the structured inputs (password hashed)."""
    ci = p.get("cloud_init") or {}
    doc: dict = {}
    if ci.get("hostname"):
        doc.update(hostname=ci["hostname"], preserve_hostname=False)
    if ci.get("users"):
        doc["users"] = ["default"] + list(ci["users"])
    if ci.get("ssh_authorized_keys"):
        doc["ssh_authorized_keys"] = list(ci["ssh_authorized_keys"])
    if p.get("password"):  # hashed: the seed is readable by anyone who can read the disk
        doc["password"] = passwords.hashed(p["password"])
        doc["chpasswd"] = {"expire": False}
        doc["ssh_pwauth"] = True
    if ci.get("packages"):
        doc["packages"] = list(ci["packages"])
    if ci.get("runcmd"):
        doc["runcmd"] = list(ci["runcmd"])
    return _merge(doc, ci.get("user_data") or {})


def _merge(doc: dict, extra: dict) -> dict:
    """extra wins for scalars; lists are appended, mappings merged."""
    out = dict(doc)
    for k, v in extra.items():
        if isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = out[k] + v
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def instance_id(p: dict, generation: int) -> str:
    """New whenever the seed is rewritten, so cloud-init runs again on the next boot. The
    password is not hashed into it: the id is a plain output."""
    digest = hashlib.sha256(json.dumps(p.get("cloud_init") or {}, sort_keys=True).encode())
    return f"{p['name']}-{generation}-{digest.hexdigest()[:8]}"


# The seed's files arrive as a tar on stdin: one round trip, and nothing of them in argv.
SEED_SCRIPT = (
    "set -e; umask 077; seed=$1; d=$(mktemp -d); trap 'rm -rf -- \"$d\"' EXIT; "
    'tar -x -f - --no-same-owner -C "$d"; set --; '
    '[ ! -e "$d/network-config" ] || set -- -N "$d/network-config"; '
    'cloud-localds "$@" "$seed.part" "$d/user-data" "$d/meta-data"; '
    'chmod 0600 "$seed.part"; mv -f "$seed.part" "$seed"'  # it may hold the password's hash
)


def write_seed(node, p: dict, seed_path: str, generation: int) -> dict:
    iid = instance_id(p, generation)
    ci = p.get("cloud_init") or {}
    files = {
        "user-data": "#cloud-config\n" + yaml.safe_dump(cloud_config(p), sort_keys=False),
        "meta-data": yaml.safe_dump(
            {"instance-id": iid, "local-hostname": ci.get("hostname") or p["name"]}
        ),
    }
    if ci.get("network_config"):
        files["network-config"] = yaml.safe_dump(ci["network_config"])
    node.run(["sh", "-c", SEED_SCRIPT, "sh", seed_path], stdin=tar(files), change=True)
    return {"instance_id": iid, "seed_generation": generation}


def tar(files: dict[str, str]) -> bytes:
    """An uncompressed tar of text files, each 0600."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()
