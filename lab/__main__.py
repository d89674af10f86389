"""python -m lab up|down|status|ssh|exec"""

import argparse
import os
import shlex
import sys

import lab
from lab import net


def cmd_up(a):
    inv = lab.up(a.nodes, a.disks_per_node, a.disk_size, fresh=a.fresh, runbook=a.runbook)
    for n in inv["nodes"]:
        print(f"{n['name']}\t{n['address']}\t{' '.join(n['disks'])}")
    print(f"inventory: {lab.const.INVENTORY}")
    return 0


def cmd_down(a):
    left = lab.down()
    return 1 if left else 0


def cmd_status(a):
    rows, ok = lab.status()
    if not rows:
        print("lab is down (no inventory)")
        return 1
    yn = {True: "yes", False: "NO"}
    for r in rows:
        dk = " ".join(f"{d}({'ok' if v else 'MISSING'})" for d, v in r["disks"].items())
        print(
            f"{r['name']}\tnetns:{yn[r['netns']]}\tsshd:{yn[r['sshd']]}\t"
            f"libvirtd:{yn[r['libvirtd']]}\tdisks:{dk}"
        )
    print(f"route unreachable {lab.const.COVER}: {yn[net.cover_route_present()]}")
    print("lab is up" if ok else "lab is NOT fully up")
    return 0 if ok else 1


def cmd_stack_config(a):
    """The running runbook lab's stack config (explicit nodes, pinned keys) as YAML."""
    import yaml  # here: `lab up|down` run on the system's python3 too

    from lab.stacks import runbook_config

    inv = lab.inventory()
    if not inv or inv["vars"].get("topology") != "runbook":
        sys.exit("no runbook lab: run `python -m lab up --runbook` first")
    print(yaml.safe_dump({"config": runbook_config(inv)}, sort_keys=False), end="")
    return 0


def _exec_ssh(node, remote, tty):
    argv = lab.ssh_argv(node)
    if tty:
        argv.insert(1, "-t")
    os.execvp(argv[0], argv + (["--", remote] if remote else []))


def cmd_ssh(a):
    # Like ssh(1): the words are joined with spaces and run by the remote shell.
    remote = " ".join(a.cmd)
    _exec_ssh(a.node, remote, tty=not remote and sys.stdin.isatty())


def cmd_exec(a):
    argv = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not argv:
        sys.exit("usage: python -m lab exec NODE -- CMD [ARGS...]")
    _exec_ssh(a.node, shlex.join(argv), tty=False)  # each word arrives exactly as given


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lab", description=lab.__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="create (or recreate) the lab")
    u.add_argument("--nodes", type=int, default=3)
    u.add_argument("--disks-per-node", type=int, default=1)
    u.add_argument("--disk-size", default="10G")
    u.add_argument("--fresh", action="store_true", help="recreate even if already up")
    u.add_argument(
        "--runbook",
        action="store_true",
        help="the runbook's layout: a Ceph network apart, the service account cephsvc",
    )
    u.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="remove everything the lab made").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="check every node").set_defaults(fn=cmd_status)
    sub.add_parser(
        "stack-config", help="the runbook lab's stack config (explicit nodes), as YAML"
    ).set_defaults(fn=cmd_stack_config)
    s = sub.add_parser("ssh", help="ssh NODE [CMD...]")
    s.add_argument("node")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_ssh)
    e = sub.add_parser("exec", help="exec NODE -- CMD...")
    e.add_argument("node")
    e.add_argument("cmd", nargs=argparse.REMAINDER)
    e.set_defaults(fn=cmd_exec)
    a = p.parse_args(argv)
    if a.command in ("up", "down") and os.geteuid() != 0:
        sys.exit("python -m lab: must run as root")
    try:
        return a.fn(a)
    except (RuntimeError, KeyError, ValueError) as e:
        print(f"python -m lab {a.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
