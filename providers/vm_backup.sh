#!/bin/sh
# cephkvm-backup: a VM's backups in TARGET/VM/, taken while it runs. Installed on the KVM
# nodes by cephkvm (providers/vm_backup.py): the one implementation behind `pulumi up`
# (`now`) and the node's own schedule, which runs without pulumi.
#
#   take VM STORAGE TARGET KEEP FULL_EVERY OWNER
#       one backup now, then pruning to KEEP; prints the backup as JSON
#   prune DIR KEEP
#       the oldest backups in DIR beyond KEEP removed
#   clean VM STORAGE DIR
#       what a killed run left (its temporary snapshot, its partial file)
#   due POLICIES
#       a backup of each VM running here whose POLICIES/VM.policy says one is due; each
#       outcome in TARGET/VM/.scheduled.json (what `pulumi refresh` shows)
#   loop POLICIES SECONDS PID_FILE
#       `due` every SECONDS, in the background (nodes without systemd)
#
# A backup reads the disk from a CephFS snapshot taken for it with the guest frozen (the
# guest agent), so it is of one moment. Full: the whole disk, template included. Otherwise
# only what differs from the previous backup, which it names as its backing file (relative).
set -eu

NS=https://cephkvm.dev/xmlns/vm/1 # the domain's owner tag (providers/libvirt_domain.py)
TEMP=@backup+                     # VM@backup+STAMP: no configured snapshot has this name

fail() {
	echo "cephkvm-backup: $*" >&2
	exit 1
}

ours() { # VM OWNER: a domain here that this stack made
	virsh -q metadata "$1" "$NS" 2>/dev/null | grep -qF "owner>$2<"
}

running() { # VM OWNER
	ours "$1" "$2" && [ "$(virsh -q domstate "$1" 2>/dev/null)" = running ]
}

# --- the chain in TARGET/VM ---------------------------------------------------------------

backups() { # DIR: the backups, oldest first
	for f in "$1"/*.qcow2; do [ -f "$f" ] && echo "$f"; done
	return 0
}

incremental() { # FILE: it names a backing file
	qemu-img info -U --output=json -- "$1" | grep -q '"backing-filename"'
}

since_full() { # DIR: incremental backups after the newest full one
	backups "$1" | sort -r | {
		n=0
		while read -r f && incremental "$f"; do n=$((n + 1)); done
		echo "$n"
	}
}

prune() { # DIR KEEP: the oldest go; the next takes its data in first when it needs it
	while [ "$(backups "$1" | wc -l)" -gt "$2" ]; do
		oldest=$(backups "$1" | head -n 1)
		next=$(backups "$1" | sed -n 2p)
		if incremental "$next"; then
			qemu-img rebase -f qcow2 -b "" "$next"
		fi
		rm -f -- "$oldest"
	done
}

clean_leftovers() { # VM STORAGE DIR: a killed run's temporary snapshot and partial file
	for s in "$2/virtualmachines/.snap/$1$TEMP"*; do
		if [ -d "$s" ]; then rmdir -- "$s"; fi
	done
	rm -f -- "$3"/*.part
}

# --- taking one ---------------------------------------------------------------------------

snapdir() { # SNAP: a CephFS snapshot of the directory above .snap
	mkdir -- "$1" && return
	echo "cephkvm-backup: mkdir $1 failed: the CephFS client of this mount may not make" \
		"snapshots (its key needs the 's' flag: 'allow rws' for mds, then remount), or the" \
		"filesystem forbids them ('ceph fs set FS allow_new_snaps true')" >&2
	return 1
}

frozen_mark() { # VM: present while this script holds the guest frozen
	echo "/run/cephkvm-backup.$1.frozen"
}

thaw() { # VM: thawed, tried a few times (a frozen guest's writes wait forever)
	for _ in 1 2 3; do
		if virsh -q domfsthaw "$1" >/dev/null 2>&1; then
			rm -f -- "$(frozen_mark "$1")"
			return 0
		fi
		sleep 1
	done
	return 1
}

snapshot() { # VM OWNER SNAP: SNAP made with the guest frozen; prints the consistency
	if ! running "$1" "$2"; then
		snapdir "$3"
		echo "crash-consistent (not quiesced: the VM is not running here)"
		return
	fi
	if [ -e "$(frozen_mark "$1")" ]; then thaw "$1" || true; fi # a killed run froze it
	touch -- "$(frozen_mark "$1")"
	if ! why=$(virsh -q domfsfreeze "$1" 2>&1 >/dev/null); then
		rm -f -- "$(frozen_mark "$1")"
		snapdir "$3"
		why=$(echo "$why" | tr -s '\n' ' ' | sed 's/^error: //; s/ *$//')
		echo "crash-consistent (not quiesced: the guest agent did not freeze: $why)"
		return
	fi
	frozen_vm=$1
	trap 'thaw "$frozen_vm"; exit 1' HUP INT TERM
	made=0
	snapdir "$3" || made=$?
	thaw "$1" || fail "$1: the guest stays frozen: the agent did not thaw it (virsh domfsthaw $1)"
	trap - HUP INT TERM
	[ "$made" = 0 ] || exit "$made"
	echo quiesced
}

take() { # VM STORAGE TARGET KEEP FULL_EVERY OWNER
	vm=$1 storage=$2 dir=$3/$1 keep=$4 full_every=$5 owner=$6
	started=$(date +%s)
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	disk=$storage/virtualmachines/$vm.qcow2
	[ -f "$disk" ] || fail "$vm: this node has no disk $disk (is the VM's storage mounted here?)"
	mkdir -p -m 0700 -- "$dir" # a disk's data
	clean_leftovers "$vm" "$storage" "$dir"
	out=$dir/$stamp.qcow2
	[ ! -e "$out" ] || fail "$vm: $out exists (one backup per second); run it again"
	previous=$(backups "$dir" | tail -n 1)
	kind=incremental
	if [ -z "$previous" ] || [ $(($(since_full "$dir") + 1)) -ge "$full_every" ]; then
		kind=full
	fi
	snap=$storage/virtualmachines/.snap/$vm$TEMP$stamp
	trap 'rmdir -- "$snap" 2>/dev/null; rm -f -- "$out.part"' EXIT
	consistency=$(snapshot "$vm" "$owner" "$snap")
	if [ "$kind" = full ]; then
		qemu-img convert -O qcow2 "$snap/$vm.qcow2" "$out.part"
	else # safe mode writes only the sectors where the snapshot and the previous differ
		qemu-img create -q -f qcow2 -F qcow2 -b "$snap/$vm.qcow2" "$out.part"
		qemu-img rebase -f qcow2 -F qcow2 -b "$(basename "$previous")" "$out.part"
	fi
	chmod 0600 -- "$out.part"
	mv -f -- "$out.part" "$out"
	rmdir -- "$snap"
	trap - EXIT
	prune "$dir" "$keep"
	printf '{"file": "%s", "kind": "%s", "bytes": %s, "consistency": "%s", "seconds": %s}\n' \
		"$(json_text "$out")" "$kind" "$(stat -c %s -- "$out")" "$(json_text "$consistency")" \
		"$(($(date +%s) - started))"
}

json_text() { # TEXT: as the inside of a JSON string (paths may hold quotes)
	printf '%s' "$1" | tr '\n\t' '  ' | sed 's/\\/\\\\/g; s/"/\\"/g'
}

# --- the schedule -------------------------------------------------------------------------

policy() { # FILE KEY: one value of a policy file (KEY=VALUE lines; never run as code)
	sed -n "s/^$2=//p" "$1" | head -n 1
}

stamp_age() { # FILE: seconds since the backup in FILE (named by its UTC stamp) was taken
	s=$(basename "$1" .qcow2)
	at=$(echo "$s" | sed 's/^\(....\)\(..\)\(..\)T\(..\)\(..\)\(..\)Z$/\1-\2-\3 \4:\5:\6/')
	echo $(($(date +%s) - $(date -u -d "$at" +%s)))
}

due() { # POLICIES
	for p in "$1"/*.policy; do
		[ -f "$p" ] || continue
		vm=$(policy "$p" vm) target=$(policy "$p" target) owner=$(policy "$p" owner)
		every=$(policy "$p" every)
		running "$vm" "$owner" || continue
		if [ -e "$(frozen_mark "$vm")" ] && flock -n "/run/cephkvm-backup.$vm.lock" true; then
			thaw "$vm" || true # frozen by a run that was killed, and none runs now
		fi
		newest=$(backups "$target/$vm" | tail -n 1)
		if [ -n "$newest" ] && [ "$(stamp_age "$newest")" -lt "$every" ]; then
			continue
		fi
		run_one "$p" "$vm" "$target/$vm"
	done
}

run_one() { # POLICY VM DIR: one scheduled backup, its outcome in DIR/.scheduled.json
	at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	err=$(mktemp)
	if got=$(flock -w 3600 "/run/cephkvm-backup.$2.lock" "$0" take "$2" \
		"$(policy "$1" storage)" "$(policy "$1" target)" "$(policy "$1" keep)" \
		"$(policy "$1" full_every)" "$(policy "$1" owner)" 2>"$err"); then
		result="\"ok\": true, \"backup\": $got"
	else
		result="\"ok\": false, \"error\": \"$(json_text "$(tail -n 5 "$err")")\""
	fi
	rm -f -- "$err"
	mkdir -p -m 0700 -- "$3"
	echo "{\"at\": \"$at\", \"node\": \"$(hostname)\", $result}" >"$3/.scheduled.json.part"
	mv -f -- "$3/.scheduled.json.part" "$3/.scheduled.json"
	echo "$at $2: $result"
}

loop() { # POLICIES SECONDS PID_FILE
	echo $$ >"$3"
	while :; do
		due "$1" || true
		sleep "$2"
	done
}

case "${1:-}" in
prune)
	[ $# = 3 ] || fail "usage: prune DIR KEEP"
	prune "$2" "$3"
	;;
clean)
	[ $# = 4 ] || fail "usage: clean VM STORAGE DIR"
	clean_leftovers "$2" "$3" "$4"
	;;
take)
	[ $# = 7 ] || fail "usage: take VM STORAGE TARGET KEEP FULL_EVERY OWNER"
	shift
	take "$@"
	;;
due)
	[ $# = 2 ] || fail "usage: due POLICIES"
	due "$2"
	;;
loop)
	[ $# = 4 ] || fail "usage: loop POLICIES SECONDS PID_FILE"
	loop "$2" "$3" "$4"
	;;
*) fail "usage: take | prune | clean | due | loop (see the top of this file)" ;;
esac
