"""Benchmark: what a dynamic provider alone adds to an unchanged preview. Previews, A B C A B
C in one run, of an empty program (the engine's floor, as preview_and_connections.py
measures it), of one dynamic resource whose provider does nothing, and of 48 such resources
each depending on the one before; each stack settled by an `up` first. Prints the median of
each and its ratio to the floor; asserts nothing. Needs `make setup`, no lab.

    .venv/bin/python bench/preview_floor.py [--rounds N]
"""

import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from preview_and_connections import timed_preview  # noqa: E402
from tests.cli import Project  # noqa: E402

NOOP = """
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ResourceProvider


class Noop(ResourceProvider):
    def check(self, olds, news):
        return CheckResult(news, [])

    def diff(self, _id, olds, news):
        return DiffResult(changes=False)

    def create(self, props):
        return CreateResult("noop", props)
"""

PROGRAM = """
import pulumi
from pulumi.dynamic import Resource

from noop import Noop


class Thing(Resource, module="bench", name="Thing"):
    def __init__(self, name, after):
        super().__init__(Noop(), name, {{}}, pulumi.ResourceOptions(depends_on=after))


last = []
for i in range({count}):
    last = [Thing(f"thing{{i}}", last)]
"""


def program(workdir: str, count: int) -> Project:
    """A stack of count no-op dynamic resources in a chain (0: nothing declared), settled."""
    project = Project(os.path.join(workdir, str(count)), "floor")
    with open(os.path.join(project.dir, "__main__.py"), "w") as f:
        f.write(PROGRAM.format(count=count) if count else "import pulumi  # noqa: F401\n")
    with open(os.path.join(project.dir, "noop.py"), "w") as f:
        f.write(NOOP)
    project.run("up", "--yes", "--skip-preview")
    return project


def main() -> None:
    args = sys.argv[1:]
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 3
    with tempfile.TemporaryDirectory() as tmp:
        stacks = {count: program(tmp, count) for count in (0, 1, 48)}
        times: dict = {count: [] for count in stacks}
        for _ in range(rounds):
            for count, project in stacks.items():
                times[count].append(timed_preview(project))
    floor = statistics.median(times[0])
    for count, each in times.items():
        what = {0: "empty program", 1: "1 no-op dynamic resource"}.get(count, f"{count} chained")
        median = statistics.median(each)
        runs = ", ".join(f"{t:.2f}" for t in each)
        print(f"{what:26s} median {median:5.2f} s  {median / floor:4.2f}x the floor  ({runs})")


if __name__ == "__main__":
    main()
