#!/usr/bin/env bash
# The lab stack's bring-up (stacks/Pulumi.lab.yaml) as a plain serial shell script: the same
# steps the providers take, one node and one step after the other, one `ssh` per step, over
# the lab's own key and pinned host keys (.labN/inventory.json; nothing from ~/.ssh).
# Prints each phase's start and end (same names as bench/bringup_phases.py) and the total.
#
#   CEPHKVM_LAB=3 bench/serial_bringup.sh [--until PHASE] [-v]
#
# Needs a fresh lab (`python -m lab up --fresh`): it makes, it does not converge. Leaves the
# cluster and the VM running; `python -m lab down` removes them. SERIAL_SSH_MUX=0 opens a
# new SSH connection per step (default: one multiplexed connection per node, as the
# providers keep one connection per node).
set -euo pipefail
export LC_ALL=C

UNTIL="" VERBOSE=0
while [ $# -gt 0 ]; do
    case $1 in
        --until) UNTIL=$2; shift 2 ;;
        -v) VERBOSE=1; shift ;;
        *) echo "usage: $0 [--until PHASE] [-v]" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=${CEPHKVM_LAB:-}
INV=$REPO/.lab$LAB/inventory.json        # lab/const.py: STATE = .lab + CEPHKVM_LAB
[ -r "$INV" ] || { echo "the lab is down ($INV is missing): run" \
    "CEPHKVM_LAB=$LAB python -m lab up" >&2; exit 2; }
KEY=$(jq -r .ssh.key_file "$INV")
KNOWN=$(jq -r .ssh.known_hosts "$INV")
SUBNET=$(jq -r .public_network "$INV")
mapfile -t NODES < <(jq -r '.nodes[].name' "$INV")
declare -A ADDR DISK
for n in "${NODES[@]}"; do
    ADDR[$n]=$(jq -r --arg n "$n" '.nodes[] | select(.name == $n) | .address' "$INV")
    DISK[$n]=$(jq -r --arg n "$n" '.nodes[] | select(.name == $n) | .disks[0]' "$INV")
done
FIRST=${NODES[0]}

# --- what the lab stack asks for (stacks/Pulumi.lab.yaml and the components' defaults) ---
C=ceph                                   # cluster name
BRIDGE=br0 NIC=eth0 CONFIRM_TIMEOUT=20
HEALTH_TIMEOUT=120 OSD_TIMEOUT=180 POOL_TIMEOUT=300 FS_TIMEOUT=120
POOLS=("cephfs_meta 16" "cephfs_data 32")  # name pg_num; size 3, min_size 2, app cephfs
FS=cephfs MNT=/mnt/cephfs STORAGE=/mnt/cephfs
VM=lab-vm1 VM_NODE=$FIRST VM_MEM=192 VM_MAXMEM=256 VM_VCPUS=1 VM_DISK_GIB=3 IP_TIMEOUT=150
# The lab stack's guest address and template, as the lab hands them to the stack.
VM_ADDR=$(jq -r .vars.guest_address "$INV")
TEMPLATE_SRC=$(jq -r .vars.guest_image "$INV")
LAB_PUB=$(cat "$KEY.pub")

WORK=$(mktemp -d /tmp/cephkvm-serial.XXXXXX)
chmod 700 "$WORK"
SSH=(ssh -F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o IdentityAgent=none
     -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$KNOWN"
     -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o BatchMode=yes
     -o ConnectTimeout=5 -o LogLevel=ERROR)

cleanup() {
    for n in "${NODES[@]}"; do
        [ -S "$WORK/mux-$n" ] && "${SSH[@]}" -o "ControlPath=$WORK/mux-$n" -O exit lab \
            >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "serial_bringup: failed at line $LINENO (phase ${PHASE:-start}): $BASH_COMMAND" >&2' ERR

log() { [ "$VERBOSE" = 1 ] && echo "  [$(now)] $*" >&2 || true; }

# on NODE WORD...: run the words on NODE (each quoted with printf %q; a shell snippet goes
# as `sh -c SNIPPET`). stdin is /dev/null; on_in passes ours through.
mux_opts() {
    if [ "${SERIAL_SSH_MUX:-1}" = 1 ]; then
        printf '%s\n' -o ControlMaster=auto -o "ControlPath=$WORK/mux-$1" -o ControlPersist=600
    else
        printf '%s\n' -o ControlPath=none
    fi
}
on_in() {
    local n=$1; shift
    local -a mux
    mapfile -t mux < <(mux_opts "$n")
    log "$n: $*"
    "${SSH[@]}" "${mux[@]}" "root@${ADDR[$n]}" -- "$(printf '%q ' "$@")"
}
on() { on_in "$@" </dev/null; }
# A NEW connection (no multiplexing): the bridge's confirmation, as the provider's.
fresh() {
    local n=$1; shift
    "${SSH[@]}" -o ControlPath=none "root@${ADDR[$n]}" -- "$(printf '%q ' "$@")" </dev/null
}
ok() { on "$@" >/dev/null 2>&1; }
# quiet NODE WORD...: `on`, its output shown only when it fails.
quiet() {
    local out
    out=$(on "$@" 2>&1) || { echo "$out" >&2; return 1; }
}
# put NODE PATH MODE OWNER < content: atomic write with mode and owner (transport.put).
put() {
    on_in "$1" sh -c 'umask 077 && cat > "$1.tmp" && chmod "$2" "$1.tmp" && chown "$3" "$1.tmp" && mv -f "$1.tmp" "$1"' \
        sh "$2" "$3" "$4"
}
cephc() { local n=$1; shift; on "$n" ceph --cluster "$C" --connect-timeout 15 "$@"; }
# cephq NODE ARGS...: a ceph command whose chatter ("pool 'x' created") is shown only on failure.
cephq() { local n=$1; shift; quiet "$n" ceph --cluster "$C" --connect-timeout 15 "$@"; }

# wait_for TIMEOUT INTERVAL WHAT COMMAND...: run COMMAND until it succeeds.
wait_for() {
    local timeout=$1 interval=$2 what=$3; shift 3
    local deadline=$(( ${EPOCHSECONDS} + ${timeout%.*} ))
    until "$@" >/dev/null; do
        if [ "$EPOCHSECONDS" -gt "$deadline" ]; then
            echo "timed out after ${timeout}s waiting for $what" >&2
            return 1
        fi
        sleep "$interval"
    done
}

# --- phases ------------------------------------------------------------------------------
T0=$EPOCHREALTIME
now() { awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
PHASE="" BEGAN=0
begin() { PHASE=$1; BEGAN=$(now); log "== $PHASE"; }
finish() {
    local end; end=$(now)
    awk -v n="$PHASE" -v b="$BEGAN" -v e="$end" \
        'BEGIN { printf "%-15s %6.1f s -> %6.1f s  (%5.1f s)\n", n, b, e, e - b }'
    if [ "$PHASE" = "$UNTIL" ]; then
        printf '%-15s %6.1f s\n' "total serial" "$(now)"
        exit 0
    fi
}

# --- daemons (Node facts, NodePrep) ------------------------------------------------------
FACTS='echo hostname=$(hostname); echo arch=$(uname -m); . /etc/os-release 2>/dev/null; echo os="$PRETTY_NAME"; [ -d /run/systemd/system ] && echo init=systemd || echo init=direct; [ -r /dev/kvm ] && [ -w /dev/kvm ] && echo kvm_device=yes || echo kvm_device=no; grep -qE "(vmx|svm)" /proc/cpuinfo && echo cpu_virt=yes || echo cpu_virt=no'
PACKAGES="openssh-server iproute2 qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients cloud-image-utils ceph-mon ceph-mgr ceph-osd ceph-mds ceph-common ceph-fuse"
MISSING='for p in '"$PACKAGES"'; do dpkg-query -W -f="\${Status}" "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done'

# A direct daemon runs when its pid file names a live process of its binary in this node's
# mount namespace (PIDs are shared between lab nodes): providers/services.py.
RUNNING='pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && [ "$(readlink /proc/$pid/exe)" = "$2" ] && [ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ]'
running() { ok "$1" sh -c "$RUNNING" sh "$2" "$3"; }
# ensure_running NODE PIDFILE ARGV...: start unless running, then wait until it runs.
ensure_running() {
    local n=$1 pidfile=$2; shift 2
    running "$n" "$pidfile" "$1" && return 0
    on "$n" "$@" >/dev/null
    wait_for 60 0.5 "$1 on $n" running "$n" "$pidfile" "$1"
}
ceph_daemon() {   # NODE KIND ID
    ensure_running "$1" "/run/ceph/$C-$2.$3.pid" \
        "/usr/bin/ceph-$2" --cluster "$C" -i "$3" --setuser ceph --setgroup ceph
}

begin "facts"
for n in "${NODES[@]}"; do
    facts=$(on "$n" sh -c "$FACTS")
    grep -qx "hostname=$n" <<<"$facts" || { echo "$n: reports $facts" >&2; exit 1; }
done
finish

begin "node prep"
for n in "${NODES[@]}"; do
    missing=$(on "$n" sh -c "$MISSING")
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086
        on "$n" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends $missing
    fi
    ensure_running "$n" /run/virtlogd.pid /usr/sbin/virtlogd -d
    ensure_running "$n" /run/libvirtd.pid /usr/sbin/libvirtd -d
done
finish

# --- br0 over eth0, node by node (KvmBridge: iproute2 with a rollback guard) -------------
RUN_DIR=/run/cephkvm
bridge_scripts() {   # NODE: writes apply/rollback/guard/netplan/network files to $WORK/$1.*
    local n=$1 obs addrs mac
    obs=$(on "$n" sh -c "ip -j addr show; echo '#---'; ip -j route show default")
    addrs=$(sed '/^#---/,$d' <<<"$obs" | jq -r --arg nic "$NIC" \
        '.[] | select(.ifname == $nic) | .addr_info[] | select(.scope == "global")
         | "\(.local)/\(.prefixlen)"')
    mac=$(sed '/^#---/,$d' <<<"$obs" | jq -r --arg nic "$NIC" '.[] | select(.ifname == $nic) | .address')
    # The lab nodes have no default route; one on eth0 would move to the bridge.
    local gw
    gw=$(sed '1,/^#---/d' <<<"$obs" | jq -r --arg nic "$NIC" \
        '.[]? | select(.dev == $nic) | .gateway // empty' | head -1)
    {
        echo "set -e"
        echo "ip link show dev $BRIDGE >/dev/null 2>&1 || ip link add name $BRIDGE type bridge stp_state 0"
        echo "ip link set dev $BRIDGE address $mac"
        echo "ip link set dev $BRIDGE up"
        echo "ip link set dev $NIC master $BRIDGE up"
        for a in $addrs; do echo "ip addr replace $a dev $BRIDGE"; done
        echo "for a in \$(ip -o addr show dev $BRIDGE scope global | awk '{print \$4}'); do case ' $(echo $addrs) ' in *\" \$a \"*) ;; *) ip addr del \"\$a\" dev $BRIDGE;; esac; done"
        echo "ip addr flush dev $NIC scope global"
        echo "ip route del default dev $BRIDGE 2>/dev/null || true"
        [ -n "$gw" ] && echo "ip route replace default via $gw dev $BRIDGE"
        true
    } >"$WORK/$n.apply"
    {
        echo "ip link set dev $NIC nomaster 2>/dev/null"
        echo "ip link del dev $BRIDGE 2>/dev/null"
        echo "ip link set dev $NIC nomaster 2>/dev/null"
        echo "ip link set dev $NIC up"
        for a in $addrs; do echo "ip addr replace $a dev $NIC"; done
        [ -n "$gw" ] && echo "ip route replace default via $gw dev $NIC"
        echo true
    } >"$WORK/$n.rollback"
    local d=$RUN_DIR/$BRIDGE
    cat >"$WORK/$n.guard" <<EOF
sh $d.apply > $d.log 2>&1; echo \$? > $d.rc
i=0; while [ \$i -lt $CONFIRM_TIMEOUT ]; do
  [ -d $d.decided ] && exit 0; sleep 1; i=\$((i+1)); done
mkdir $d.decided 2>/dev/null || exit 0
echo rolling-back > $d.state
sh $d.rollback >> $d.log 2>&1; echo rolled-back > $d.state
EOF
    {
        echo "network:"
        echo "  version: 2"
        echo "  ethernets:"
        echo "    $NIC: {dhcp4: false, dhcp6: false}"
        echo "  bridges:"
        echo "    $BRIDGE:"
        echo "      interfaces: [$NIC]"
        echo "      addresses: [$(echo $addrs | sed 's/ /, /g')]"
        echo "      parameters: {stp: false}"
        echo "      dhcp4: false"
        echo "      dhcp6: false"
        echo "      macaddress: '$mac'"
        [ -n "$gw" ] && echo "      routes: [{to: default, via: $gw}]"
        true
    } >"$WORK/$n.netplan"
    echo "<network><name>$BRIDGE</name><forward mode='bridge'/><bridge name='$BRIDGE'/></network>" \
        >"$WORK/$n.network"
}

bridge() {
    local n=$1 d=$RUN_DIR/$BRIDGE tmp rc="" deadline
    bridge_scripts "$n"
    # netplan exists on the lab nodes but cannot apply without systemd: the YAML is still
    # validated with `netplan generate` in a scratch root, then iproute2 applies it.
    if ok "$n" sh -c 'command -v netplan'; then
        tmp=$(on "$n" mktemp -d)
        on "$n" mkdir -p "$tmp/etc/netplan"
        put "$n" "$tmp/etc/netplan/60-cephkvm.yaml" 0600 root:root <"$WORK/$n.netplan"
        on "$n" netplan generate --root-dir "$tmp"
        on "$n" rm -rf -- "$tmp"
    fi
    ok "$n" test -d /run/systemd/system && { echo "$n runs systemd: netplan mode is not scripted here" >&2; return 1; }
    on "$n" mkdir -p "$RUN_DIR"
    on "$n" rm -rf "$d.rc" "$d.state" "$d.log" "$d.decided"
    put "$n" "$d.apply" 0700 root:root <"$WORK/$n.apply"
    put "$n" "$d.rollback" 0700 root:root <"$WORK/$n.rollback"
    put "$n" "$d.guard" 0700 root:root <"$WORK/$n.guard"
    # Detached, and off this SSH session's stdout: ssh would wait for the guard otherwise.
    on "$n" sh -c 'setsid -f sh "$1" </dev/null >/dev/null 2>&1' sh "$d.guard"
    deadline=$(( EPOCHSECONDS + CONFIRM_TIMEOUT - 2 ))
    while [ "$EPOCHSECONDS" -lt "$deadline" ]; do
        rc=$(fresh "$n" sh -c "cat $d.rc 2>/dev/null" || true)
        [ -n "$rc" ] && break
        sleep 1
    done
    if [ "$rc" != 0 ] || ! fresh "$n" mkdir "$d.decided"; then
        echo "$n: bridge $BRIDGE failed (rc '$rc'); the guard restores eth0" >&2
        return 1
    fi
    # A Ceph node waits for the cluster to recover before the next node's bridge.
    if ok "$n" test -r "/etc/ceph/$C.conf"; then
        wait_for 300 3 "Ceph to recover on $n" ceph_settled "$n"
    fi
    # The libvirt network of mode bridge over br0.
    if ! ok "$n" virsh -c qemu:///system net-info "$BRIDGE"; then
        put "$n" "$RUN_DIR/$BRIDGE-network.xml" 0600 root:root <"$WORK/$n.network"
        on "$n" virsh -q -c qemu:///system net-define "$RUN_DIR/$BRIDGE-network.xml" >/dev/null
    fi
    on "$n" virsh -q -c qemu:///system net-start "$BRIDGE" >/dev/null
    on "$n" virsh -q -c qemu:///system net-autostart "$BRIDGE" >/dev/null
}
ceph_settled() {
    cephc "$1" health -f json 2>/dev/null | jq -e '[.checks // {} | to_entries[]
        | select(.key | IN("MON_DOWN", "OSD_DOWN", "OSD_HOST_DOWN", "PG_DEGRADED",
                           "PG_AVAILABILITY", "SLOW_OPS") or .value.severity == "HEALTH_ERR")]
        | length == 0' >/dev/null
}

begin "bridges"
for n in "${NODES[@]}"; do bridge "$n"; done
finish

# --- Ceph: mons, mgrs, MDS (CephCluster: the manual deployment) --------------------------
TMPD=/var/lib/ceph/tmp
FSID_FILE=$TMPD/$C.fsid BOOT_KEYRING=$TMPD/$C.bootstrap.keyring MONMAP=$TMPD/$C.monmap
CONF=/etc/ceph/$C.conf ADMIN_KEYRING=/etc/ceph/$C.client.admin.keyring

quorum_complete() {
    cephc "$FIRST" quorum_status -f json 2>/dev/null | jq -e --argjson want \
        "$(printf '%s\n' "${NODES[@]}" | jq -R . | jq -s .)" \
        '($want - .quorum_names) == []' >/dev/null
}
daemons_registered() {
    local want mgr fs
    want=$(printf '%s\n' "${NODES[@]}" | jq -R . | jq -s .)
    mgr=$(cephc "$FIRST" mgr dump -f json) || return 1
    fs=$(cephc "$FIRST" fs dump -f json 2>/dev/null) || return 1
    jq -e --argjson want "$want" '.available and
        ($want - ([.active_name] + [.standbys[].name])) == []' <<<"$mgr" >/dev/null &&
    jq -e --argjson want "$want" '($want - ([.standbys[].name] +
        [.filesystems[].mdsmap.info[]?.name])) == []' <<<"$fs" >/dev/null
}
# No health check left but those of later steps (OSDs, pools, filesystems).
ceph_bare_settled() {
    cephc "$FIRST" health detail -f json | jq -e '[.checks // {} | keys[]
        | select(test("^(OSD_|PG_|POOL_|TOO_FEW_|MDS_|FS_|OBJECT_|SLOW_OPS)") | not)]
        | length == 0' >/dev/null
}

begin "mons/mgrs/MDS"
# Preflight: clocks agree, every node reaches every other (providers/ceph_cluster.py).
for n in "${NODES[@]}"; do
    a=$EPOCHREALTIME; r=$(on "$n" date +%s.%N); b=$EPOCHREALTIME
    awk -v a="$a" -v b="$b" -v r="$r" 'BEGIN { d = r - (a + b) / 2; if (d < 0) d = -d;
        exit !(d <= 0.05 + (b - a) / 2) }' || { echo "$n: clock off by more than 50 ms" >&2; exit 1; }
    probe=""
    for o in "${NODES[@]}"; do
        [ "$o" = "$n" ] || probe+="timeout 3 bash -c '</dev/tcp/${ADDR[$o]}/22' 2>/dev/null || echo $o; "
    done
    unreachable=$(on "$n" sh -c "$probe")
    [ -z "$unreachable" ] || { echo "$n cannot reach: $unreachable" >&2; exit 1; }
done
# Identity on the first mon: fsid, keys made by ceph-authtool, one monmap by monmaptool.
FSID=$(on "$FIRST" uuidgen)
on "$FIRST" sh -c "echo $FSID > $FSID_FILE.new && chown ceph:ceph $FSID_FILE.new && mv $FSID_FILE.new $FSID_FILE"
on "$FIRST" ceph-authtool --create-keyring "$ADMIN_KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
on "$FIRST" chmod 0600 "$ADMIN_KEYRING"
on "$FIRST" ceph-authtool --create-keyring "$BOOT_KEYRING" --gen-key -n mon. \
    --cap mon 'allow *' >/dev/null
on "$FIRST" ceph-authtool "$BOOT_KEYRING" --import-keyring "$ADMIN_KEYRING" >/dev/null
on "$FIRST" ceph-authtool "$BOOT_KEYRING" --gen-key -n client.bootstrap-osd \
    --cap mon 'profile bootstrap-osd' --cap mgr 'allow r' >/dev/null
on "$FIRST" chown ceph:ceph "$BOOT_KEYRING"
on "$FIRST" chmod 0600 "$BOOT_KEYRING"
addv=()
for n in "${NODES[@]}"; do addv+=(--addv "$n" "[v2:${ADDR[$n]}:3300,v1:${ADDR[$n]}:6789]"); done
on "$FIRST" monmaptool --create --fsid "$FSID" "${addv[@]}" "$MONMAP" >/dev/null
{
    echo "# Written by bench/serial_bringup.sh"
    echo "[global]"
    echo "fsid = $FSID"
    echo "mon_initial_members = $(printf '%s, ' "${NODES[@]}" | sed 's/, $//')"
    echo "mon_host = $(for n in "${NODES[@]}"; do printf '[v2:%s:3300,v1:%s:6789] ' "${ADDR[$n]}" "${ADDR[$n]}"; done | sed 's/ $//')"
    echo "public_network = $SUBNET"
    echo "auth_cluster_required = cephx"
    echo "auth_service_required = cephx"
    echo "auth_client_required = cephx"
    echo 'pid_file = /run/ceph/$cluster-$name.pid'
} >"$WORK/ceph.conf"
# The first mon's files, carried through this controller to the others (binary monmap too).
on "$FIRST" cat "$ADMIN_KEYRING" >"$WORK/admin.keyring"
on "$FIRST" cat "$BOOT_KEYRING" >"$WORK/bootstrap.keyring"
on "$FIRST" cat "$MONMAP" >"$WORK/monmap"
for n in "${NODES[@]}"; do
    if [ "$n" != "$FIRST" ]; then
        echo "$FSID" | put "$n" "$FSID_FILE" 0644 ceph:ceph
        put "$n" "$BOOT_KEYRING" 0600 ceph:ceph <"$WORK/bootstrap.keyring"
        put "$n" "$MONMAP" 0644 root:root <"$WORK/monmap"
        put "$n" "$ADMIN_KEYRING" 0600 root:root <"$WORK/admin.keyring"
    fi
    put "$n" "$CONF" 0644 root:root <"$WORK/ceph.conf"
done
for n in "${NODES[@]}"; do
    data=/var/lib/ceph/mon/$C-$n
    on "$n" rm -rf "$data"
    on "$n" install -d -o ceph -g ceph -m 0750 "$data"
    on "$n" chown ceph:ceph "$MONMAP"
    on "$n" ceph-mon --cluster "$C" --mkfs -i "$n" --monmap "$MONMAP" --keyring "$BOOT_KEYRING" \
        --setuser ceph --setgroup ceph
    on "$n" install -o ceph -g ceph -m 0644 /dev/null "$data/done"
    ceph_daemon "$n" mon "$n"
done
wait_for "$HEALTH_TIMEOUT" 1 "mons in quorum" quorum_complete
cephq "$FIRST" config set mon auth_allow_insecure_global_id_reclaim false
cephq "$FIRST" config set mon mon_data_avail_warn 2
for kind in mgr mds; do
    if [ $kind = mgr ]; then caps=(mon 'allow profile mgr' osd 'allow *' mds 'allow *')
    else caps=(mon 'profile mds' mgr 'profile mds' mds 'allow *' osd 'allow *'); fi
    for n in "${NODES[@]}"; do
        data=/var/lib/ceph/$kind/$C-$n
        on "$n" install -d -o ceph -g ceph -m 0750 "$data"
        cephc "$n" auth get-or-create "$kind.$n" "${caps[@]}" -o "$data/keyring"
        on "$n" chown -R ceph:ceph "$data"
        ceph_daemon "$n" "$kind" "$n"
    done
done
wait_for "$HEALTH_TIMEOUT" 1 "every mgr (one active) and every MDS registered" daemons_registered
wait_for "$HEALTH_TIMEOUT" 1 "mon/mgr health checks to clear" ceph_bare_settled
finish

# --- one OSD per node on its loop disk (CephOsd, method raw) -----------------------------
osd_up_in() {   # ID
    cephc "$FIRST" osd tree -f json | jq -e --argjson id "$1" \
        '.nodes[] | select(.id == $id) | .status == "up" and .reweight > 0' >/dev/null
}

begin "OSDs"
for n in "${NODES[@]}"; do
    dev=${DISK[$n]}
    ok "$n" test -x /usr/bin/udevadm ||
        on "$n" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends udev
    # The device must be empty: no signature, no OSD on it.
    on "$n" test -b "$dev"
    held=$(on "$n" wipefs -n -p "$dev" | grep -v '^#' || true)
    ! ok "$n" blkid -p "$dev" || held+=" blkid"
    listed=$(on "$n" ceph-volume --cluster "$C" raw list "$dev" --format json)
    [ "$(jq length <<<"$listed")" = 0 ] || held+=" an OSD"
    [ -z "$held" ] || { echo "$n:$dev is not empty ($held)" >&2; exit 1; }
    # ceph-volume authenticates as client.bootstrap-osd, with the key from the cluster.
    on "$n" install -d -o ceph -g ceph -m 0755 /var/lib/ceph/bootstrap-osd
    cephq "$n" auth get client.bootstrap-osd -o "/var/lib/ceph/bootstrap-osd/$C.keyring"
    on "$n" chown ceph:ceph "/var/lib/ceph/bootstrap-osd/$C.keyring"
    on "$n" chmod 0600 "/var/lib/ceph/bootstrap-osd/$C.keyring"
    quiet "$n" ceph-volume --cluster "$C" raw prepare --bluestore --data "$dev"
    id=$(on "$n" ceph-volume --cluster "$C" raw list "$dev" --format json |
         jq -r --arg fsid "$FSID" '.[] | select(.ceph_fsid == $fsid) | .osd_id')
    [ -n "$id" ] || { echo "$n: ceph-volume prepared $dev but lists no OSD on it" >&2; exit 1; }
    quiet "$n" ceph-volume --cluster "$C" raw activate --device "$dev" --no-systemd
    ceph_daemon "$n" osd "$id"
    cephc "$FIRST" osd tree -f json | jq -e --argjson id "$id" \
        '.nodes[] | select(.id == $id) | .reweight > 0' >/dev/null || cephq "$FIRST" osd in "$id"
    wait_for "$OSD_TIMEOUT" 1 "osd.$id up and in" osd_up_in "$id"
done
finish

# --- pools (CephPool), each until its placement groups are active+clean -----------------
pool_clean() {
    cephc "$FIRST" pg ls-by-pool "$1" -f json | jq -e \
        '(if type == "object" then .pg_stats else . end) // [] | all(.state == "active+clean")' \
        >/dev/null
}

begin "pools"
for spec in "${POOLS[@]}"; do
    read -r pool pg <<<"$spec"
    detail=$(cephc "$FIRST" osd pool ls detail -f json)
    jq -e --arg p "$pool" 'any(.[]; .pool_name == $p)' <<<"$detail" >/dev/null ||
        cephq "$FIRST" osd pool create "$pool" "$pg" "$pg" replicated
    # What the pool is, against what the stack wants: set only the difference.
    detail=$(cephc "$FIRST" osd pool ls detail -f json |
             jq -c --arg p "$pool" '.[] | select(.pool_name == $p)')
    [ "$(jq .size <<<"$detail")" = 3 ] || cephq "$FIRST" osd pool set "$pool" size 3
    [ "$(jq .min_size <<<"$detail")" = 2 ] || cephq "$FIRST" osd pool set "$pool" min_size 2
    [ "$(jq -r .pg_autoscale_mode <<<"$detail")" = off ] ||
        cephq "$FIRST" osd pool set "$pool" pg_autoscale_mode off
    [ "$(jq '.pg_num_target // .pg_num' <<<"$detail")" = "$pg" ] ||
        cephq "$FIRST" osd pool set "$pool" pg_num "$pg"
    jq -e '.application_metadata | has("cephfs")' <<<"$detail" >/dev/null ||
        cephq "$FIRST" osd pool application enable "$pool" cephfs
    wait_for "$POOL_TIMEOUT" 1 "pool $pool's PGs active+clean" pool_clean "$pool"
done
finish

# --- CephFS (CephFilesystem) -------------------------------------------------------------
fs_active() {
    cephc "$FIRST" fs dump -f json 2>/dev/null | jq -e --arg fs "$FS" '.filesystems[].mdsmap
        | select(.fs_name == $fs) | [.info[] | select(.state == "up:active")] | length >= 1' \
        >/dev/null
}
fs_healthy() {
    cephc "$FIRST" health detail -f json | jq -e '[.checks // {} | keys[]
        | select(test("^(MDS_|FS_|PG_|TOO_FEW_PGS)"))] | length == 0' >/dev/null
}

begin "CephFS"
cephc "$FIRST" fs dump -f json 2>/dev/null | jq -e --arg fs "$FS" \
    'any(.filesystems[]; .mdsmap.fs_name == $fs)' >/dev/null ||
    cephq "$FIRST" fs new "$FS" cephfs_meta cephfs_data
mdsmap=$(cephc "$FIRST" fs dump -f json 2>/dev/null | jq -c --arg fs "$FS" \
    '.filesystems[].mdsmap | select(.fs_name == $fs)')
[ "$(jq .max_mds <<<"$mdsmap")" = 1 ] || cephq "$FIRST" fs set "$FS" max_mds 1
[ "$(jq .standby_count_wanted <<<"$mdsmap")" = 1 ] ||
    cephq "$FIRST" fs set "$FS" standby_count_wanted 1
wait_for "$FS_TIMEOUT" 1 "an active MDS for $FS" fs_active
wait_for "$FS_TIMEOUT" 1 "$FS's MDS, fs and PG health checks to clear" fs_healthy
finish

# --- ceph-fuse at /mnt/cephfs on every node (CephFSMount) --------------------------------
begin "mounts"
for n in "${NODES[@]}"; do
    cid=$FS-$n
    keyring=/etc/ceph/$C.client.$cid.keyring
    # A client key whose caps cover only this filesystem.
    cephc "$n" auth get "client.$cid" >/dev/null 2>&1 ||
        cephc "$n" fs authorize "$FS" "client.$cid" / rw >/dev/null
    cephc "$n" auth get "client.$cid" >"$WORK/client.keyring" 2>/dev/null
    put "$n" "$keyring" 0600 root:root <"$WORK/client.keyring"
    ok "$n" test -d "$MNT" || on "$n" mkdir -p "$MNT"
    line="none $MNT fuse.ceph ceph.id=$cid,ceph.client_fs=$FS,_netdev,defaults 0 0"
    # Exactly one fstab line for the mountpoint; fstab is a bind mount: rewritten in place.
    on "$n" sh -c 'grep -v "^[^#]*[[:space:]]$2[[:space:]]" /etc/fstab > /etc/fstab.cephkvm; echo "$1" >> /etc/fstab.cephkvm; cat /etc/fstab.cephkvm > /etc/fstab; rm -f /etc/fstab.cephkvm' \
        sh "$line" "$MNT"
    quiet "$n" mount "$MNT"
    on "$n" sh -c 'p="$1/.cephkvm-probe-$2"; echo ok > "$p" && test "$(cat "$p")" = ok && rm -f "$p"' \
        sh "$MNT" "$n"
done
finish

# --- the lab VM (CloudVM): template, overlay and seed on CephFS, domain, agent address ----
stem=$(basename "$TEMPLATE_SRC"); stem=${stem%.qcow2}
TEMPLATE=$STORAGE/templates/$stem.qcow2
DISK_PATH=$STORAGE/virtualmachines/$VM.qcow2
SEED=$STORAGE/config/$VM-seed.iso
MAC=52:54:00:$(printf '%s' "$VM/0" | sha256sum | sed -E 's/^(..)(..)(..).*/\1:\2:\3/')
vm_address() {
    on "$VM_NODE" virsh -c qemu:///system domifaddr "$VM" --source agent 2>/dev/null |
        awk -v mac="$MAC" '$2 != "-" { cur = $2 } cur == mac && $4 ~ /[0-9]/ && $4 !~ /^fe80:/ {
            found = 1; print $4 } END { exit !found }'
}

begin "VM"
on "$VM_NODE" mkdir -p "$STORAGE/templates" "$STORAGE/virtualmachines" "$STORAGE/config"
if ! ok "$VM_NODE" test -s "$TEMPLATE"; then
    on "$VM_NODE" qemu-img convert -O qcow2 "$TEMPLATE_SRC" "$TEMPLATE.$VM_NODE.part"
    on "$VM_NODE" mv -f "$TEMPLATE.$VM_NODE.part" "$TEMPLATE"
fi
on "$VM_NODE" qemu-img create -q -f qcow2 -F qcow2 -b "$TEMPLATE" "$DISK_PATH.part" "${VM_DISK_GIB}G"
on "$VM_NODE" mv -f "$DISK_PATH.part" "$DISK_PATH"
printf '#cloud-config\nhostname: %s\npreserve_hostname: false\nssh_authorized_keys:\n- %s\n' \
    "$VM" "$LAB_PUB" >"$WORK/user-data"
printf 'instance-id: %s-1-serial\nlocal-hostname: %s\n' "$VM" "$VM" >"$WORK/meta-data"
printf 'ethernets:\n  eth0:\n    addresses:\n    - %s\nversion: 2\n' "$VM_ADDR" \
    >"$WORK/network-config"
tmp=$(on "$VM_NODE" mktemp -d)
for f in user-data meta-data network-config; do
    put "$VM_NODE" "$tmp/$f" 0600 root:root <"$WORK/$f"
done
on "$VM_NODE" cloud-localds -N "$tmp/network-config" "$SEED.part" "$tmp/user-data" "$tmp/meta-data"
on "$VM_NODE" chmod 0600 "$SEED.part"
on "$VM_NODE" mv -f "$SEED.part" "$SEED"
on "$VM_NODE" rm -rf -- "$tmp"
# The domain as providers/libvirt_domain.py writes it: TCG with a 128 MiB code cache.
cat >"$WORK/domain.xml" <<EOF
<domain type='qemu'>
  <name>$VM</name>
  <memory unit='MiB'>$VM_MAXMEM</memory>
  <currentMemory unit='MiB'>$VM_MEM</currentMemory>
  <vcpu placement='static' current='$VM_VCPUS'>$VM_VCPUS</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/><tcg><tb-cache unit='MiB'>128</tb-cache></tcg></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='$DISK_PATH'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='$SEED'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='bridge'><mac address='$MAC'/><source bridge='$BRIDGE'/><model type='virtio'/></interface>
    <serial type='pty'><log file='/var/log/libvirt/qemu/$VM-serial.log' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='virtio'/>
  </devices>
</domain>
EOF
put "$VM_NODE" "$RUN_DIR/$VM.xml" 0600 root:root <"$WORK/domain.xml"
on "$VM_NODE" virsh -q -c qemu:///system define "$RUN_DIR/$VM.xml" >/dev/null
on "$VM_NODE" virsh -q -c qemu:///system start "$VM" >/dev/null
on "$VM_NODE" virsh -q -c qemu:///system autostart "$VM" >/dev/null
wait_for "$IP_TIMEOUT" 3 "$VM's guest agent to report an address" vm_address
finish

printf '%-15s %6.1f s\n' "total serial" "$(now)"
