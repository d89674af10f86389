"""Drive the real Pulumi CLI on a throwaway copy of the project with its own local backend,
so tests never touch the developer's state or the committed stack files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSPHRASE = "cephkvm-lab"  # the salt in stacks/Pulumi.lab.yaml is for this one
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt")
PROJECT_DIRS = ("providers", "components", "stacks")


def _interruptible() -> None:
    """A run started as a background job inherits SIGINT ignored, and so would every
    `pulumi` it starts: the CLI stops its plugins with SIGINT and waits 5 s for one that
    ignores it (the language host it asks for metadata, at every preview, up and destroy).
    A handler here is reset to the default in each child."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


_interruptible()


class Project:
    def __init__(self, workdir: str, stack: str, source: str | None = None, code: str = ROOT):
        """A copy of the project (or of examples/<source>) in workdir, with a backend in
        workdir/state shared by every Project made in the same workdir. `code`: the tree
        the project's code is copied from (an older commit's, for an upgrade test)."""
        self.dir = os.path.join(workdir, source or "project")
        self.stack = stack
        self.state = os.path.join(workdir, "state")
        self.ssh_log = os.path.join(workdir, "ssh.log")
        os.makedirs(self.state, exist_ok=True)
        if source:
            shutil.copytree(os.path.join(ROOT, "examples", source), self.dir)
        else:
            self._copy_project(code)
        self.env = self._env()
        self.run("stack", "init", stack)

    def _copy_project(self, code: str) -> None:
        os.makedirs(self.dir)
        for name in PROJECT_FILES:
            shutil.copy(os.path.join(code, name), self.dir)
        for name in PROJECT_DIRS:
            shutil.copytree(
                os.path.join(code, name),
                os.path.join(self.dir, name),
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        self._use_venv(os.path.join(ROOT, ".venv"))
        lab_dir = ".lab" + os.environ.get("CEPHKVM_LAB", "")  # see lab/const.py
        inventory = os.path.join(ROOT, lab_dir, "inventory.json")
        if os.path.exists(inventory):  # a copy, so a test may doctor it
            os.makedirs(os.path.join(self.dir, lab_dir))
            shutil.copy(inventory, os.path.join(self.dir, lab_dir))

    def upgrade_code(self) -> None:
        """Put this checkout's code and stack file in place of the project's, as a `git
        pull` of the project does; the state stays."""
        shutil.copy(os.path.join(ROOT, "__main__.py"), self.dir)
        shutil.copy(os.path.join(ROOT, "stacks", f"Pulumi.{self.stack}.yaml"), self.stack_file)
        for name in ("providers", "components"):
            shutil.rmtree(os.path.join(self.dir, name))
            shutil.copytree(
                os.path.join(ROOT, name),
                os.path.join(self.dir, name),
                ignore=shutil.ignore_patterns("__pycache__"),
            )

    def _env(self) -> dict:
        # The engine's default on a failure, whatever the caller's shell exports.
        inherited = {k: v for k, v in os.environ.items() if k != "PULUMI_CONTINUE_ON_ERROR"}
        return {
            **inherited,
            "PATH": os.pathsep.join(
                [
                    os.path.join(ROOT, ".tools", "bin"),
                    os.path.join(ROOT, ".venv", "bin"),
                    os.environ["PATH"],
                ]
            ),
            "PULUMI_HOME": os.path.join(ROOT, ".tools", "pulumi-home"),
            "PULUMI_PYTHON_CMD": os.path.join(ROOT, ".venv", "bin", "python"),
            "PULUMI_BACKEND_URL": "file://" + self.state,
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "CEPHKVM_SSH_LOG": self.ssh_log,
        }

    def _use_venv(self, venv: str) -> None:
        path = os.path.join(self.dir, "Pulumi.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("virtualenv: .venv", f"virtualenv: {venv}"))

    def command(self, *args, netns_isolated=False) -> list[str]:
        """The `pulumi` argv run() runs, for the stack (in self.dir, with self.env)."""
        argv = ["pulumi", *args, "--non-interactive"]
        if args[0] not in ("stack",):
            argv += ["--stack", self.stack]
        if netns_isolated:
            # A fresh network namespace with only loopback: nothing outside is reachable.
            argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
        return argv

    def run(self, *args, check=True, netns_isolated=False, timeout=900, env=None):
        proc = subprocess.run(
            self.command(*args, netns_isolated=netns_isolated),
            cwd=self.dir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\n"
                f"{_diagnostics(proc.stdout)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def recover(self) -> subprocess.CompletedProcess:
        """The operator's one command after a killed run (scripts/stack.sh recover)."""
        proc = subprocess.run(
            ["bash", os.path.join(ROOT, "scripts", "stack.sh"), "recover", self.stack],
            env={**self.env, "CEPHKVM_PROJECT": self.dir},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"recover: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def preview_json(self, **kw) -> dict:
        return json.loads(self.run("preview", "--json", **kw).stdout)

    def outputs(self, show_secrets=False) -> dict:
        args = ["stack", "output", "--json", "--stack", self.stack]
        if show_secrets:
            args.append("--show-secrets")
        return json.loads(self.run(*args).stdout)

    def ssh_log_lines(self) -> list[str]:
        if not os.path.exists(self.ssh_log):
            return []
        with open(self.ssh_log) as f:
            return f.read().splitlines()

    @property
    def stack_file(self) -> str:
        return os.path.join(self.dir, "stacks", f"Pulumi.{self.stack}.yaml")

    def edit_config(self, change) -> None:
        """Apply change(config) to the stack file's config mapping, in place."""
        with open(self.stack_file) as f:
            doc = yaml.safe_load(f)
        change(doc["config"])
        with open(self.stack_file, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)

    def preview_with(self, change, *args, check=True):
        """`pulumi preview ARGS` with change(config) applied; the stack file is put back."""
        with open(self.stack_file) as f:
            original = f.read()
        try:
            self.edit_config(change)
            return self.run("preview", *args, check=check)
        finally:
            with open(self.stack_file, "w") as f:
                f.write(original)

    def preview_changes(self, change) -> dict:
        """{resource name: step} for each step that is not `same` in a preview with
        change(config) applied."""
        preview = json.loads(self.preview_with(change, "--json").stdout)
        return {s["urn"].rsplit("::", 1)[1]: s for s in preview["steps"] if s["op"] != "same"}

    def set_config(self, key: str, value: str, *extra):
        self.run("config", "set", "--stack", self.stack, key, value, *extra)

    def state_text(self) -> str:
        chunks = []
        for base, _, files in os.walk(self.state):
            for name in files:
                with open(os.path.join(base, name), errors="replace") as f:
                    chunks.append(f.read())
        return "\n".join(chunks)


def _diagnostics(stdout: str) -> str:
    """The engine's Diagnostics section: the errors, which a long Outputs section after it
    would push out of a tail."""
    start = stdout.find("Diagnostics:")
    if start < 0:
        return ""
    end = stdout.find("\nOutputs:", start)
    return stdout[start : end if end > 0 else None][:6000]
