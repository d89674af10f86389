"""The benchmarks cannot rot: each module imports (their phase tables are checked at import),
the offline ones run on a tiny size, and every resource kind the providers define is in a
bring-up phase or said to be in none."""

import importlib
import json
import os
import re
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)

pytestmark = pytest.mark.unit
NOT_A_PHASE = {
    "MigrationKey",
    "MigrationAccess",
    "DestroyGuard",
    "Maintenance",
    "VmSnapshot",
    "VmBackup",
    "BackupSchedule",
    "CephDashboard",
    "Cockpit",
    "LoginPassword",
}  # instant or not part of a bring-up (the lab stack has no dashboard or Cockpit)


@pytest.mark.parametrize("name", sorted(f[:-3] for f in os.listdir(BENCH) if f.endswith(".py")))
def test_bench_module_imports(name):
    importlib.import_module(name)


def test_every_resource_kind_is_in_a_phase():
    from bringup_phases import PHASES

    kinds = set()
    for f in os.listdir(os.path.join(ROOT, "providers")):
        if f.endswith(".py"):
            text = open(os.path.join(ROOT, "providers", f)).read()
            kinds |= set(re.findall(r'module="cephkvm", name="(\w+)"', text))
    assert kinds, "no resource kinds found"
    assert kinds - NOT_A_PHASE <= set(PHASES), sorted(kinds - NOT_A_PHASE - set(PHASES))


def test_phases_are_stamped_as_the_engine_streams_its_events(tmp_path):
    """The engine's own timestamps have whole seconds; measure() stamps each event as it
    arrives, so a phase that ends 0.3 s after it began is 0.3 s long, not 0 or 1."""
    from bringup_phases import began, measure

    def event(key, kind):
        return json.dumps({key: {"metadata": {"type": f"cephkvm:index:{kind}"}}, "timestamp": 7})

    script = f"echo '{event('resourcePreEvent', 'CephPool')}'; sleep 0.3; " + (
        f"echo '{event('resOutputsEvent', 'CephPool')}'"
    )

    class Engine:  # the `pulumi up --json` stand-in: its events, 0.3 s apart
        dir, env = str(tmp_path), dict(os.environ)

        def command(self, *_args):
            return ["sh", "-c", script]

    log = str(tmp_path / "events.jsonl")
    before = time.time()
    spans, total = measure(Engine(), log)
    begin, end = spans["pools"]
    assert end - begin >= 0.3 and total >= end, spans
    assert spans["start"] == [0.0, begin], "the engine began its first resource"
    assert before <= began(log) <= time.time()


def test_serial_comparison_folds_the_daemon_phases():
    from bringup_vs_serial import grouped

    spans = {"mons": (1.0, 5.0), "mgrs": (4.0, 9.0), "OSDs": (9.0, 12.0)}
    assert grouped(spans) == {"mons/mgrs/MDS": (1.0, 9.0), "OSDs": (9.0, 12.0)}


def test_the_clone_bench_runs_on_a_tiny_template(capsys):
    """A run, not only an import: a stale call into the providers fails here."""
    import clone_time

    clone_time.main({"tiny": 1}, runs=1)
    assert "tiny" in capsys.readouterr().out


def test_the_migration_bench_reads_ping_and_reports(capsys):
    import migration_downtime as bench

    out = (
        "PING x\n[100.000] 64 bytes from x\n[100.010] 64 bytes from x\n[100.300] 64 bytes from x\n"
    )
    assert round(bench.longest_gap(out), 3) == 0.29
    move = {"downtime_ms": 20, "total_ms": 900, "data_mib": 80.5, "up_s": 9.0, "ping_gap_ms": 290}
    bench.report({label: [move] for label in bench.SETTINGS})
    assert "| max downtime 50 ms | 20 ms | 290 ms | ? | ? | 900 ms" in capsys.readouterr().out


def test_the_migration_bench_splits_the_gap_by_qemus_events():
    """The pause from the source's STOP to the destination's RESUME, then the probe's first
    reply after RESUME; events of another domain or kind do not count."""
    import migration_downtime as bench

    source = (
        "2026-12-05 07:10:18.100+0000: event STOP for domain 'other': <null>\n"
        "2026-12-05 07:10:18.204+0000: event STOP for domain 'vm': <null>\n"
        "2026-12-05 07:10:18.237+0000: event MIGRATION for domain 'vm': {}\n"
    )
    dest = "2026-12-05 08:10:18.274+0100: event RESUME for domain 'vm': <null>\n"  # any zone
    resume = bench.event_time(dest, "RESUME", "vm")
    ping = f"[{resume - 0.2:.3f}] 64 bytes from x\n[{resume + 0.031:.3f}] 64 bytes from x\n"
    figures = bench.where_the_gap_went(source, dest, ping, "vm")
    assert round(figures["paused_ms"]) == 70
    assert round(figures["first_reply_ms"]) == 31
    assert bench.where_the_gap_went(source, "", ping, "vm") == {}


def test_the_serial_script_reads_what_the_lab_inventory_holds():
    """serial_bringup.sh runs only by hand: its `jq` reads of the inventory must name fields
    of the Inventory schema the lab writes (a renamed field stopped it once)."""
    from providers.schema.node import Inventory, Node, Ssh

    script = open(os.path.join(BENCH, "serial_bringup.sh")).read()
    paths = re.findall(r"jq -r (?:--arg n \"\$n\" )?'?([.\w\[\]]+)[^\"]*\"\$INV\"", script)
    assert len(paths) >= 6, paths
    inner = {"ssh": Ssh, "nodes": Node}  # vars is free-form
    for path in paths:
        top, *rest = [p for p in re.split(r"[.\[\]]+", path) if p]
        assert top in Inventory.model_fields, path
        if top in inner and rest:
            assert rest[0] in inner[top].model_fields, path
    # the per-node reads select a node, then read its fields
    for field in re.findall(r"select\(\.name == \$n\) \| \.(\w+)", script):
        assert field in Node.model_fields, field


def test_serial_comparison_prints_ratios_per_phase_to_the_mounts_and_in_total():
    from bringup_vs_serial import summary, table

    p = ({"mounts": (40, 45), "VM": (45, 95), "guest boot": (48, 95), "OSDs": (20, 30)}, 100.0)
    s = ({"mounts": (80, 90), "VM": (90, 140), "guest boot": (94, 140), "OSDs": (20, 40)}, 150.0)
    out = table(p, s)
    assert "to mounts" in out and "0.50x" in out and "0.67x" in out, out
    assert [ln for ln in out.splitlines() if ln.startswith("OSDs")][0].endswith("0.50x"), out
    said = summary([(p, s), (p, s)])
    assert said.splitlines()[0] == "to mounts: 0.50x (rounds: 0.50x, 0.50x)", said
    assert said.splitlines()[1].startswith("VM step: 1.00x"), said
    # the VM step split at QEMU's start: 3 s of work against 4 s, then the guest's boot
    assert [ln for ln in out.splitlines() if ln.startswith(" before QEMU")][0].endswith("0.75x")
    assert said.splitlines()[2] == "VM before QEMU: 0.75x (rounds: 0.75x, 0.75x)", said
    assert said.splitlines()[3].startswith("guest boot: 1.02x"), said
