"""Names, addresses and paths of the lab. Everything the lab creates is derived from here,
so `down` can find it again by prefix or by path even after a crashed `up`."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".lab"                 # git-ignored (it holds its own .gitignore)
NODES_DIR = STATE / "nodes"           # per-node private trees, configs, sparse disks
CLIENT_KEY = STATE / "ssh" / "id_ed25519"
KNOWN_HOSTS = STATE / "known_hosts"
INVENTORY = STATE / "inventory.json"
LOCK = STATE / "lock"

PREFIX = "cklab"                      # netns, veth and bridge names all start with it
BRIDGE = "cklab0"                     # the lab switch in the root namespace
SUBNET = "10.231.0.0/24"
COVER = "10.231.0.0/16"               # unreachable in the root namespace while the lab exists
HOST_ADDR = "10.231.0.1"
PREFIXLEN = 24


def netns(node: str) -> str:
    return f"{PREFIX}-{node}"


def veth(node: str) -> str:
    # Host side of the node's eth0; same text as the netns name (different object kind).
    return f"{PREFIX}-{node}"


def address(index: int) -> str:
    if not 1 <= index <= 200:
        raise ValueError(f"node index {index} out of range 1..200")
    return f"10.231.0.{10 + index}"


def node_dir(node: str) -> Path:
    return NODES_DIR / node
