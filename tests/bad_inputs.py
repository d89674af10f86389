"""Bad stack configs an operator can write, each with the key path its refusal must name.
Each change applies to the example stack's `config:` mapping (keys with the `cephkvm:`
prefix). The unit tier loads each through components.config; the engine tier previews each
with the real CLI and checks that no host was contacted."""


def _node(i):
    return lambda c: c["cephkvm:nodes"][i]


def _set(getter, **values):
    return lambda c: getter(c).update(values)


def _pool(c, i=0):
    return c["cephkvm:pools"][i]


def _vm(c):
    return c["cephkvm:vms"][0]


def _bridge(c):
    return c["cephkvm:bridges"][0]


def _ceph(c):
    return c["cephkvm:ceph"]


def _mount(c):
    return c["cephkvm:mounts"][0]


def _fs(c):
    return c["cephkvm:filesystems"][0]


def _ci(c):
    return _vm(c)["cloud_init"]


BAD = [
    # nodes
    ("address all digits", _set(_node(1), address="10.20.10.300"), "nodes[1].address"),
    ("address with a space", _set(_node(1), address="osd 2"), "nodes[1].address"),
    ("address with an IPv6 scope", _set(_node(0), address="fe80::1%eth0\nx"), "nodes[0].address"),
    ("ceph address not an IP", _set(_node(0), ceph_address="osd1.ceph"), "nodes[0].ceph_address"),
    (
        "mon outside public_network",
        _set(_node(2), ceph_address="10.99.0.3"),
        "nodes[2].ceph_address",
    ),
    ("node name upper case", _set(_node(0), name="OSD1"), "nodes[0].name"),
    ("port out of range", _set(_node(0), port=70000), "nodes[0].port"),
    ("host key garbage", _set(_node(0), host_key="AAAA"), "nodes[0].host_key"),
    ("unknown role", _set(_node(0), roles=["mon", "osdd"]), "nodes[0].roles"),
    ("typo in a node key", _set(_node(0), rolez=["kvm"]), "nodes[0].rolez"),
    ("disk not a device path", _set(_node(0), disks=["sdb"]), "nodes[0].disks"),
    ("disk listed twice", _set(_node(0), disks=["/dev/sdb", "/dev/sdb"]), "nodes[0].disks"),
    ("node name with a newline", _set(_node(0), user="cephsvc\nroot"), "nodes[0].user"),
    # ssh
    (
        "trust on first use not a boolean",
        lambda c: c["cephkvm:ssh"].update(trust_on_first_use="yes"),
        "ssh.trust_on_first_use",
    ),
    ("typo in ssh", lambda c: c["cephkvm:ssh"].update(keyfile="/k"), "ssh.keyfile"),
    # ceph
    (
        "public network with a scope",
        _set(_ceph, public_network="fe80::%eth0/64"),
        "ceph.public_network",
    ),
    ("public network not a CIDR", _set(_ceph, public_network="10.204.10.0"), "ceph.public_network"),
    (
        "public network with a newline",
        _set(_ceph, public_network="10.204.10.0/24\nauth_cluster_required = none"),
        "ceph.public_network",
    ),
    ("allow_data_loss as 'no'", _set(_ceph, allow_data_loss="no"), "ceph.allow_data_loss"),
    ("wipe_devices as 1", _set(_ceph, wipe_devices=1), "ceph.wipe_devices"),
    ("typo in ceph", _set(_ceph, allow_dataloss=True), "ceph.allow_dataloss"),
    (
        "option name with a newline",
        _set(_ceph, options={"global": {"a\nauth": "none"}}),
        "ceph.options.global",
    ),
    (
        "option in an unknown section",
        _set(_ceph, options={"monitors": {"x": 1}}),
        "ceph.options.monitors",
    ),
    ("health timeout too short", _set(_ceph, health_timeout=2), "ceph.health_timeout"),
    ("fsid not a UUID", _set(_ceph, fsid="not-a-uuid"), "ceph.fsid"),
    ("osd method unknown", _set(_ceph, osd_method="zfs"), "ceph.osd_method"),
    # pools, filesystems, mounts
    (
        "pool allow_delete as 'false '",
        lambda c: _pool(c).update(allow_delete="false "),
        "pools[0].allow_delete",
    ),
    ("pool size over the hosts", lambda c: _pool(c).update(size=4), "pools[0].size"),
    ("pool min_size over size", lambda c: _pool(c).update(min_size=5), "pools[0].size"),
    ("pool name with a slash", lambda c: _pool(c).update(name="a/b"), "pools[0].name"),
    ("typo in a pool", lambda c: _pool(c).update(sizee=2), "pools[0].sizee"),
    (
        "filesystem on a missing pool",
        lambda c: _fs(c).update(data_pool="nope"),
        "filesystems[0].data_pool",
    ),
    ("typo in a filesystem", lambda c: _fs(c).update(max_mdss=2), "filesystems[0].max_mdss"),
    (
        "mountpoint with a tab",
        lambda c: _mount(c).update(mountpoint="/mnt/a\tb"),
        "mounts[0].mountpoint",
    ),
    ("mountpoint /", lambda c: _mount(c).update(mountpoint="/"), "mounts[0].mountpoint"),
    ("mountpoint /etc", lambda c: _mount(c).update(mountpoint="/etc"), "mounts[0].mountpoint"),
    ("mount on an unknown node", lambda c: _mount(c).update(nodes=["osd9"]), "mounts[0].nodes"),
    ("typo in a mount", lambda c: _mount(c).update(mountpont="/x"), "mounts[0].mountpont"),
    # bridges
    ("bridge gateway not an IP", lambda c: _bridge(c).update(gateway="nope"), "bridges[0].gateway"),
    (
        "bridge address without prefix",
        lambda c: _bridge(c)["addresses"].update(osd1=["10.20.10.31"]),
        "bridges[0].addresses.osd1",
    ),
    (
        "bridge name too long",
        lambda c: _bridge(c).update(name="a-very-long-bridge"),
        "bridges[0].name",
    ),
    (
        "bridge DNS search with a newline",
        lambda c: _bridge(c).update(search=["example.com\n  - evil"]),
        "bridges[0].search",
    ),
    # VMs
    (
        "VM NIC on a bridge nobody makes",
        lambda c: _vm(c).update(nics=[{"bridge": "br9"}]),
        "vms[0].nics[0]",
    ),
    ("VM memory too small", lambda c: _vm(c).update(memory_mib=16), "vms[0].memory_mib"),
    ("VM vCPUs absurd", lambda c: _vm(c).update(vcpus=100000), "vms[0].vcpus"),
    ("VM on an unknown node", lambda c: _vm(c).update(node="osd9"), "vms[0].node"),
    ("VM keep_disk as 'off'", lambda c: _vm(c).update(keep_disk="off"), "vms[0].keep_disk"),
    ("VM with ip_timeout (renamed)", lambda c: _vm(c).update(ip_timeout=30), "vms[0].ip_timeout"),
    ("VM wait_for unknown", lambda c: _vm(c).update(wait_for="ssh"), "vms[0].wait_for"),
    (
        "authorized key with a newline",
        lambda c: _ci(c).update(ssh_authorized_keys=["ssh-ed25519 AAAA a@b\nssh-rsa BBBB evil"]),
        "vms[0].cloud_init.ssh_authorized_keys[0]",
    ),
    (
        "authorized key not a key",
        lambda c: _ci(c).update(ssh_authorized_keys=["hello"]),
        "vms[0].cloud_init.ssh_authorized_keys[0]",
    ),
    (
        "hostname with a newline",
        lambda c: _ci(c).update(hostname="virt\n01"),
        "vms[0].cloud_init.hostname",
    ),
    ("typo in cloud_init", lambda c: _ci(c).update(hostnam="x"), "vms[0].cloud_init.hostnam"),
    ("password in the stack file", lambda c: _vm(c).update(password="x"), "vms[0].password"),
    # top level
    ("typo at the top", lambda c: c.update({"cephkvm:nodez": []}), "nodez"),
    (
        "vm_storage relative",
        lambda c: c.update({"cephkvm:vm_storage": "relative/dir"}),
        "vm_storage",
    ),
]
