"""Write components/ceph_startup_options.txt: the options of the running Ceph release that a
daemon reads only when it starts (`ceph config help NAME`: can_update_at_runtime false).
components/ceph_restart.py reads the list so that preview knows which option changes
restart daemons. Run it again when the Ceph release the nodes install changes.

    python3 scripts/ceph_startup_options.py NODE    (a lab node with a running cluster)
    python3 scripts/ceph_startup_options.py --print (the program to run on any Ceph node:
                                                     python3 - < it > list.json)
"""

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "components", "ceph_startup_options.txt")

# Runs on a node with the admin keyring: one librados client, a mon command per option.
REMOTE = r"""
import json, rados
cluster = rados.Rados(conffile="/etc/ceph/ceph.conf")
cluster.connect()
def ask(**command):
    rc, out, err = cluster.mon_command(json.dumps({**command, "format": "json"}), b"")
    if rc:
        raise SystemExit(f"{command}: {err}")
    return json.loads(out)
def runtime(help):
    help = help[0] if isinstance(help, list) else help
    return help.get("can_update_at_runtime", True)
names = ask(prefix="config ls")
startup = sorted(n for n in names if not runtime(ask(prefix="config help", key=n)))
print(json.dumps({"version": ask(prefix="version")["version"], "options": len(names),
                  "startup": startup}))
"""


def main(argv: list) -> None:
    if argv[:1] == ["--print"]:
        print(REMOTE)
        return
    if len(argv) != 1:
        sys.exit(__doc__)
    sys.path.insert(0, ROOT)
    import lab

    got = lab.run(argv[0], ["python3", "-c", REMOTE], timeout=600)
    if got.returncode:
        sys.exit(got.stderr)
    found = json.loads(got.stdout)
    # mgr module options (mgr/influx/...) are set through the mgr, never as ceph.conf lines
    found["startup"] = [n for n in found["startup"] if re.fullmatch(r"[a-z][a-z0-9_]*", n)]
    with open(OUT, "w") as f:
        f.write(
            f"# {found['version']}: {len(found['startup'])} of {found['options']} options are "
            "read only at start\n# (made by scripts/ceph_startup_options.py; one name a line)\n"
        )
        f.write("".join(f"{name}\n" for name in found["startup"]))
    print(f"{OUT}: {len(found['startup'])} of {found['options']} options")


if __name__ == "__main__":
    main(sys.argv[1:])
