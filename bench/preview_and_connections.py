"""Benchmark: `pulumi preview` time of an unchanged lab stack, and SSH connections and
mutating commands per `pulumi up`. Prints figures; asserts nothing. Needs a running lab
(`python -m lab up`) and `make setup`."""

import os
import statistics
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lab  # noqa: E402
from tests.cli import Project  # noqa: E402


def count(project: Project, action: str) -> tuple[float, Counter, int]:
    open(project.ssh_log, "w").close()
    start = time.monotonic()
    project.run(*action.split(), "--yes", "--skip-preview")
    elapsed = time.monotonic() - start
    lines = project.ssh_log_lines()
    connects = Counter(line.split()[1] for line in lines if line.startswith("connect "))
    changes = sum(1 for line in lines if line.startswith("change "))
    return elapsed, connects, changes


def main() -> None:
    if not lab.inventory():
        sys.exit("the lab is down: run `python -m lab up` first")
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab")
        try:
            for label, action in (
                ("first up", "up"),
                ("no-op up", "up"),
                ("no-op up --refresh", "up --refresh"),
            ):
                elapsed, connects, changes = count(project, action)
                print(
                    f"{label:20s} {elapsed:6.1f} s  ssh connections per node "
                    f"{dict(connects)}  mutating commands {changes}"
                )
            times = []
            open(project.ssh_log, "w").close()
            for _ in range(3):
                start = time.monotonic()
                project.run("preview")
                times.append(time.monotonic() - start)
            print(
                f"{'preview (unchanged)':20s} {statistics.median(times):6.1f} s median of 3"
                f"  ssh connections "
                f"{sum(1 for ln in project.ssh_log_lines() if ln.startswith('connect'))}"
                " (must be 0)"
            )
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


if __name__ == "__main__":
    main()
