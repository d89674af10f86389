"""One lab node: private directory tree, sshd and libvirt configs, and its start script.

A node is a network namespace plus its own mount and UTS namespaces, entered once with
`ip netns exec NS unshare --mount --uts --propagation private sh init.sh`. The script
bind-mounts the node's private directories, sets the hostname and starts virtlogd,
libvirtd and sshd as daemons. The mount namespace lives as long as those daemons do, and
every SSH session lands in it, so an SSH client sees a separate server.
"""

import os
import pwd
import shlex
import shutil
import subprocess
import uuid

from . import const
from .ssh import keygen
from .util import CLEAN_ENV, sh

# (path on a real host, seed from the host's copy?, owner when the user exists).
# Everything else (/usr, /tmp, the rest of /etc and /root, /dev, the PID namespace) is
# shared, except root's dotfiles below and /dev/kvm.
PRIVATE_DIRS = [
    ("/etc/ceph", True, None),
    ("/var/lib/ceph", True, "ceph"),
    ("/var/log/ceph", False, "ceph"),
    ("/run", False, None),
    ("/etc/libvirt", True, None),
    ("/var/lib/libvirt", True, None),
    ("/var/cache/libvirt", True, None),
    ("/var/log/libvirt", False, None),
    ("/mnt", False, None),
    ("/root/.ssh", False, None),
    ("/etc/netplan", True, None),
    ("/usr/local/lib/cephkvm", False, None),  # the backup script (providers/vm_backup.py)
    ("/var/log/cephkvm", False, None),
]
PRIVATE_FILES = ["/etc/hosts", "/etc/fstab"]  # fstab: each node mounts its own CephFS

# Root's shell start files, as a fresh Debian host has them (base-files). The shared ones on
# this machine run `pyenv init`, which costs ~0.2 s per SSH command and takes a lock file in
# the shared ~/.pyenv: a session killed by `down` while holding it made every later shell on
# the machine wait 60 s. Covered only where the host has the file (a bind mount needs it).
ROOT_DOTFILES = {
    "/root/.bashrc": "/usr/share/base-files/dot.bashrc",
    "/root/.profile": "/usr/share/base-files/dot.profile",
}

# Guests here cannot use KVM (see DESIGN.md 5), and /dev/kvm is root-only on this machine:
# libvirt's probe (as root) then sees KVM while its usability check (as libvirt-qemu) does
# not, so it throws away its capabilities cache and re-probes QEMU (4-8 s) on every call.
# Inside nodes, /dev/kvm is covered by an unreadable empty file: both checks agree on "no
# KVM", libvirt offers domain type `qemu` (TCG) only, and its cache stays valid.
HIDE_KVM = "/dev/kvm"
PACKAGEKIT = "/usr/share/dbus-1/system-services/org.freedesktop.PackageKit.service"

# QEMU capabilities probed once are kept here and seeded into new nodes: all nodes share
# one kernel and one QEMU, so the cache is valid for each of them (libvirt re-probes if not).
CAPS_CACHE = const.STATE / "cache" / "qemu-capabilities"


def tree(node: str, path: str):
    """Where a node's private copy of host path lives under the state dir."""
    return const.node_dir(node) / "root" / path.lstrip("/")


def host_uuid(node: str) -> str:
    # Stable per node name, distinct between nodes (libvirt migration needs distinct ones).
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cephkvm-lab/{node}"))


def _chown(path, user):
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _make_dir(node, path, seed, owner):
    dst = tree(node, path)
    dst.mkdir(parents=True, exist_ok=True)
    if os.path.isdir(path):
        st = os.stat(path)
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, st.st_mode & 0o7777)
        if seed:  # cp -a keeps owners (libvirt-qemu, ceph) that shutil would drop
            sh("cp", "-a", f"{path}/.", f"{dst}/")
    if owner:
        _chown(dst, owner)
    return dst


def _etc_hosts(nodes):
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{n['address']}\t{n['name']}" for n in nodes]
    return "\n".join(lines) + "\n"


def _sshd_config(node, addr, runbook=False):
    d = const.node_dir(node)
    who = f"the service account {const.SERVICE_USER}" if runbook else "root"
    return f"""# sshd of lab node {node}; only its own address, only the lab key for {who}.
ListenAddress {addr}:22
HostKey {d}/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin {"no" if runbook else "prohibit-password"}
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
X11Forwarding no
MaxSessions 64
MaxStartups 64:30:128
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def _configure_libvirt(node, addr, runbook=False):
    etc = tree(node, "/etc/libvirt")
    with open(etc / "libvirtd.conf", "a") as f:
        f.write(
            f'\n# lab node {node}\nhost_uuid = "{host_uuid(node)}"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
        )
        if runbook:
            # Debian asks polkit (over D-Bus) whether a non-root client may connect; lab
            # nodes run no D-Bus, so the socket's group decides, as without polkit.
            f.write(
                'unix_sock_group = "libvirt"\nunix_sock_rw_perms = "0770"\nauth_unix_rw = "none"\n'
            )
    with open(etc / "qemu.conf", "a") as f:
        f.write(f'\n# lab node {node}\nmigration_host = "{addr}"\n')
        if os.path.exists(HIDE_KVM):
            # libvirt cannot carry the /dev/kvm cover (a file bind mount) into a guest's
            # private /dev, so guests here use the node's /dev.
            f.write("namespaces = []\n")
    # No NAT network inside nodes: it would need dnsmasq/iptables and is never used.
    autostart = etc / "qemu" / "networks" / "autostart"
    if autostart.is_dir():
        shutil.rmtree(autostart)
    autostart.mkdir(parents=True)


def _service_account(node: str, client_pub: str) -> None:
    """The runbook's `cephsvc` (passwordless sudo, the lab key) in the node's own /etc (an
    overlay: useradd and usermod work inside the node, the host's user database is never
    touched) and its own /home."""
    upper, user = const.node_dir(node) / "etc-upper", const.SERVICE_USER
    for d in (upper, const.node_dir(node) / "etc-work", upper / "sudoers.d"):
        d.mkdir(parents=True, exist_ok=True)
    taken = {int(line.split(":")[2]) for line in open("/etc/passwd") if line.count(":") >= 6}
    uid = next(i for i in range(2000, 60000) if i not in taken)
    adds = {
        "passwd": f"{user}:x:{uid}:{uid}:cephkvm service account:/home/{user}:/bin/bash",
        "shadow": f"{user}:*:20000:0:99999:7:::",  # no password, not locked: keys only
        "group": f"{user}:x:{uid}:",
        "gshadow": f"{user}:!::",
    }
    for name, line in adds.items():
        text = _in_libvirt_group(open(f"/etc/{name}").read(), name)
        (upper / name).write_text(text.rstrip("\n") + "\n" + line + "\n")
        shutil.copystat(f"/etc/{name}", upper / name)
        st = os.stat(f"/etc/{name}")
        os.chown(upper / name, st.st_uid, st.st_gid)
    sudoers = upper / "sudoers.d" / user
    sudoers.write_text(f"{user} ALL = (root) NOPASSWD:ALL\n")  # the runbook's line
    os.chmod(sudoers, 0o440)
    ssh_dir = tree(node, f"/home/{user}/.ssh")
    ssh_dir.mkdir(parents=True, mode=0o700)
    (ssh_dir / "authorized_keys").write_text(client_pub + "\n")
    for path in (ssh_dir.parent, ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid, uid)
    os.chmod(ssh_dir.parent, 0o750)
    os.chmod(ssh_dir / "authorized_keys", 0o600)


def _in_libvirt_group(text: str, name: str) -> str:
    """libvirt-dbus (Cockpit's way to libvirt) in group libvirt: on the runbook nodes the
    libvirt socket's group stands in for Debian's polkit rule, which needs a D-Bus."""
    if name not in ("group", "gshadow"):
        return text
    lines = []
    for line in text.splitlines():
        fields = line.split(":")
        if fields[0] == "libvirt" and "libvirtdbus" not in fields[-1].split(","):
            fields[-1] = ",".join([m for m in fields[-1].split(",") if m] + ["libvirtdbus"])
        lines.append(":".join(fields))
    return "\n".join(lines) + "\n"


def prepare(node: str, addr: str, nodes, client_pub: str, runbook=False) -> str:
    """Lay out the node's state dir; returns the node's public host key line."""
    d = const.node_dir(node)
    d.mkdir(parents=True, exist_ok=True)
    for path, seed, owner in PRIVATE_DIRS:
        _make_dir(node, path, seed, owner)
    run = tree(node, "/run")
    os.chmod(run, 0o755)
    (run / "sshd").mkdir(mode=0o755)  # sshd's privilege separation dir
    (run / "lock").mkdir(mode=0o1777)
    os.chmod(run / "lock", 0o1777)
    (run / "ceph").mkdir()
    os.chmod(run / "ceph", 0o770)  # as the ceph package makes it; mkdir(mode) obeys umask
    _chown(run / "ceph", "ceph")
    (tree(node, "/var/log/libvirt") / "qemu").mkdir(exist_ok=True)
    _seed_caps_cache(node)
    (d / "no-kvm").touch(mode=0o000)
    ssh_dir = tree(node, "/root/.ssh")
    os.chmod(ssh_dir, 0o700)
    (ssh_dir / "authorized_keys").write_text(client_pub + "\n")
    tree(node, "/etc/hosts").write_text(_etc_hosts(nodes))
    tree(node, "/etc/fstab").write_text("# lab node fstab (private to the node)\n")
    for path, skel in ROOT_DOTFILES.items():
        tree(node, path).write_text(open(skel).read() if os.path.exists(skel) else "")
    _configure_libvirt(node, addr, runbook)
    if runbook:
        tree(node, "/home").mkdir(parents=True, exist_ok=True)
        tree(node, "/var/log").mkdir(parents=True, exist_ok=True)
        _service_account(node, client_pub)
    (d / "sshd_config").write_text(_sshd_config(node, addr, runbook))
    (d / "init.sh").write_text(_init_script(node, runbook))
    pub = keygen(d / "ssh_host_ed25519_key", f"cklab-{node}")
    return " ".join(pub.split()[:2])


def _seed_caps_cache(node):
    if CAPS_CACHE.is_dir():
        dst = tree(node, "/var/cache/libvirt/qemu/capabilities")
        dst.mkdir(parents=True, exist_ok=True)
        sh("cp", "-a", f"{CAPS_CACHE}/.", f"{dst}/")


def save_caps_cache(node):
    """Keep a node's probed QEMU capabilities for the next `up`."""
    src = tree(node, "/var/cache/libvirt/qemu/capabilities")
    if src.is_dir() and any(src.iterdir()):
        CAPS_CACHE.mkdir(parents=True, exist_ok=True)
        sh("cp", "-a", f"{src}/.", f"{CAPS_CACHE}/")


def _init_script(node: str, runbook=False) -> str:
    d = const.node_dir(node)
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        f"# Start of lab node {node}, run inside its own mount+UTS namespaces.",
        "set -eu",
        f"hostname {q(node)}",
    ]
    if runbook:  # its own /etc over the host's (first: the private dirs below sit on it)
        layers = f"lowerdir=/etc,upperdir={d / 'etc-upper'},workdir={d / 'etc-work'}"
        lines.append(f"mount -t overlay overlay -o {q(layers)} /etc")
        # /home and /var/log (logins write wtmp and lastlog) are the node's own too
        for path in ("/home", "/var/log"):
            lines.append(f"mount --bind {q(str(tree(node, path)))} {path}")
        if os.path.exists(PACKAGEKIT):  # Cockpit's shell would start it on the host's /var/lib
            lines.append(f"mount --bind /dev/null {PACKAGEKIT}")
    for path in [p for p, _, _ in PRIVATE_DIRS] + PRIVATE_FILES:
        if path not in PRIVATE_FILES:
            lines.append(f"mkdir -p {q(path)}")
        lines.append(f"mount --bind {q(str(tree(node, path)))} {q(path)}")
    for path in ROOT_DOTFILES:
        if os.path.exists(path):
            lines.append(f"mount --bind {q(str(tree(node, path)))} {q(path)}")
    if os.path.exists(HIDE_KVM):
        lines.append(f"mount --bind {q(str(d / 'no-kvm'))} {HIDE_KVM}")
    lines += [
        "/usr/sbin/virtlogd -d",
        "/usr/sbin/libvirtd -d",
        f"/usr/sbin/sshd -f {q(str(d / 'sshd_config'))} -E {q(str(d / 'sshd.log'))}",
    ]
    return "\n".join(lines) + "\n"


def start(node: str) -> subprocess.Popen:
    d = const.node_dir(node)
    logf = open(d / "init.log", "w")
    argv = [
        "ip",
        "netns",
        "exec",
        const.netns(node),
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "/bin/sh",
        str(d / "init.sh"),
    ]
    # New session: a Ctrl-C of `lab up` must not reach the daemons half-started.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=logf,
        env=CLEAN_ENV,
        start_new_session=True,
    )
    logf.close()
    return proc
