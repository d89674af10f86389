"""Benchmark: CloudVM's clone step (template import done once, then a qcow2 overlay per VM)
for a small and a much larger template. The overlay is copy-on-write, so its time should not
grow with the template. Runs the provider's own step functions against this machine (a local
stand-in for the SSH session). Prints figures; asserts nothing. Needs qemu-img."""

import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from providers import vm_storage  # noqa: E402
from providers.transport import Host, Result, Session  # noqa: E402

RUNS = 5
TEMPLATES = {"small": 64, "large": 4096}  # MiB of real (random) data in the template


class LocalSession(Session):
    def __init__(self):
        super().__init__(Host(name="local", address="127.0.0.1"))

    def run(self, argv, *, stdin=None, check=True, change=False, secrets=(), timeout=0):
        proc = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, input=stdin, check=check
        )
        return Result(proc.stdout, proc.stderr, proc.returncode)


def make_image(path: str, mib: int) -> None:
    raw = path + ".raw"
    with open(raw, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1024 * 1024))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, path], check=True)
    os.unlink(raw)


def main(templates: dict = TEMPLATES, runs: int = RUNS) -> None:
    node = LocalSession()
    with tempfile.TemporaryDirectory(prefix="cephkvm-bench-") as tmp:
        storage = os.path.join(tmp, "storage")
        vm_storage.make_dirs(node, storage)
        print(
            f"{'template':>8} {'data':>9} {'import (once)':>14} {'clone median':>13} "
            f"{'clone max':>10}"
        )
        for label, mib in templates.items():
            source = os.path.join(tmp, f"{label}.qcow2")
            make_image(source, mib)
            props = {"name": "x", "storage": storage, "template": {"source": source}}
            start = time.monotonic()
            template = vm_storage.import_template(node, props)
            imported = time.monotonic() - start
            times = []
            for i in range(runs):
                vm_paths = vm_storage.paths(
                    {**props, "name": f"{label}-{i}", "template_path": template}
                )
                start = time.monotonic()
                vm_storage.make_overlay(node, vm_paths, 20)
                times.append(time.monotonic() - start)
            print(
                f"{label:>8} {mib:>5} MiB {imported:>13.2f}s {statistics.median(times):>12.3f}s"
                f" {max(times):>9.3f}s"
            )


if __name__ == "__main__":
    main()
