"""Benchmark: `pulumi preview` time of an unchanged lab stack against the engine's floor (a
preview of an empty program through the same CLI, language host and backend, measured in
the same run, A B A B), and SSH connections and mutating commands per `pulumi up`. Prints
figures; asserts nothing. Needs a running lab (`python -m lab up`) and `make setup`."""

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


def empty_program(workdir: str) -> Project:
    """The project with a program that declares nothing: what every preview costs."""
    floor = Project(workdir, "floor")
    with open(os.path.join(floor.dir, "__main__.py"), "w") as f:
        f.write("import pulumi  # noqa: F401  (the engine's floor: nothing declared)\n")
    return floor


def timed_preview(project: Project) -> float:
    start = time.monotonic()
    project.run("preview")
    return time.monotonic() - start


def against_floor(project: Project, floor: Project, rounds: int = 2) -> tuple[list, list]:
    """Unchanged previews of project and of the empty program, alternating."""
    floors, stack = [], []
    for _ in range(rounds):
        floors.append(timed_preview(floor))
        stack.append(timed_preview(project))
    return floors, stack


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
            open(project.ssh_log, "w").close()
            floors, times = against_floor(project, empty_program(os.path.join(tmp, "floor")))
            ratio = statistics.median(times) / statistics.median(floors)
            rounds = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(floors, times))
            print(
                f"{'preview (unchanged)':20s} {statistics.median(times):6.1f} s median of "
                f"{len(times)}; empty program {statistics.median(floors):.1f} s: {ratio:.2f}x"
                f" the floor (empty/stack, A B A B: {rounds} s); ssh connections "
                f"{sum(1 for ln in project.ssh_log_lines() if ln.startswith('connect'))}"
                " (must be 0)"
            )
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


if __name__ == "__main__":
    main()
