"""Names, addresses and paths of the lab. Everything the lab creates is derived from here,
so `down` can find it again by prefix or by path even after a crashed `up`."""

import os
from pathlib import Path

# Several labs may run side by side (one per developer or test run): CEPHKVM_LAB=1..9 picks
# another state dir, name prefix and subnet. Unset is the default lab.
INSTANCE = os.environ.get("CEPHKVM_LAB", "")
if INSTANCE not in ("",) + tuple("123456789"):
    raise SystemExit(f"CEPHKVM_LAB={INSTANCE!r}: use a digit 1-9, or unset it for the default lab")
NET = 231 + int(INSTANCE or 0)

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / f".lab{INSTANCE}"  # git-ignored (it holds its own .gitignore)
NODES_DIR = STATE / "nodes"  # per-node private trees, configs, sparse disks
CLIENT_KEY = STATE / "ssh" / "id_ed25519"
KNOWN_HOSTS = STATE / "known_hosts"
INVENTORY = STATE / "inventory.json"
LOCK = STATE / "lock"

PREFIX = f"ck{INSTANCE}lab"  # netns and veth names are PREFIX-nodeN
BRIDGE = f"{PREFIX}0"  # the lab switch in the root namespace
SUBNET = f"10.{NET}.0.0/24"
COVER = f"10.{NET}.0.0/16"  # unreachable in the root namespace while the lab exists
HOST_ADDR = f"10.{NET}.0.1"
PREFIXLEN = 24
# The runbook topology (`lab up --runbook`): a second switch for Ceph's public network, with
# no address in the root namespace, and a service account instead of root.
CEPH_BRIDGE = f"{PREFIX}1"
CEPH_SUBNET = f"10.{NET}.10.0/24"
SERVICE_USER = "cephsvc"


def netns(node: str) -> str:
    return f"{PREFIX}-{node}"


def veth(node: str) -> str:
    # Host side of the node's eth0; same text as the netns name (different object kind).
    return f"{PREFIX}-{node}"


def address(index: int, network: int = 0) -> str:
    """Node index's address on the lab switch (network 0) or the Ceph switch (10)."""
    if not 1 <= index <= 200:
        raise ValueError(f"node index {index} out of range 1..200")
    return f"10.{NET}.{network}.{10 + index}"


def ceph_veth(node: str) -> str:
    return f"{PREFIX}-{node}c"


def node_dir(node: str) -> Path:
    return NODES_DIR / node
