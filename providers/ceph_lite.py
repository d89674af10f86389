"""The `ceph` command line with fewer signatures to try: sent to a node's python3 on stdin
by ceph_cli.ceph. Not imported by the providers: it runs on the node.

On every call the CLI parses all of the cluster's ~700 command signatures and tries the
command against each: 0.2-0.3 s of CPU, most of a call (bench/README). This loads the
node's own CLI and runs it unchanged, except that a command for the mons is tried first
against the signatures that begin with its own words, the only ones it can match. Options,
grammar, output, hints and exit codes stay the CLI's.
"""

import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
from importlib.machinery import SourceFileLoader


def fits(sig, words):
    """Whether a signature's leading words are the command's (only such can match it)."""
    for i, part in enumerate(sig):
        if not isinstance(part, str) or i >= len(words):
            return True
        if part != words[i]:
            return False
    return True


def narrow(cli, words):
    """The CLI tries words against its own family of signatures first; if none matches, it
    tries every signature, so a wrong command gets the CLI's own hints."""
    parse, validate = cli.parse_json_funcsigs, cli.validate_command
    every = {}

    def parse_json_funcsigs(text, consumer):
        every.update(text=text, consumer=consumer)
        family = {
            tag: cmd for tag, cmd in json.loads(text).items() if fits(cmd.get("sig") or [], words)
        }
        return parse(json.dumps(family), consumer)

    def validate_command(sigdict, args, verbose=False):
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            valid = validate(sigdict, args, verbose)
        if valid:
            sys.stderr.write(said.getvalue())
            return valid
        return validate(parse(every["text"], every["consumer"]), args, verbose)

    cli.parse_json_funcsigs, cli.validate_command = parse_json_funcsigs, validate_command


def load_cli():
    """The node's `ceph` script as a module (its main runs only as a script)."""
    loader = SourceFileLoader("ceph_cli_main", shutil.which("ceph"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def main(argv):
    if not shutil.which("ceph"):
        print("ceph: command not found (install ceph-common)", file=sys.stderr)
        sys.exit(127)
    sys.argv = ["ceph", *argv]
    try:
        cli = load_cli()
        words = cli.parse_cmdargs(argv)[2]
        if words and cli.find_cmd_target(words) == ("mon", ""):  # not `tell`, a PG, a daemon
            narrow(cli, words)
    except Exception:  # noqa: BLE001 - a CLI unlike Pacific's: run it as it is
        os.execvp("ceph", ["ceph", *argv])
    # What the CLI does after main() when run as a script.
    try:
        retval = cli.main()
        if retval == 0 and cli.cluster_handle:
            cli.run_in_thread(cli.cluster_handle.shutdown)
    except KeyboardInterrupt:
        print("Interrupted")
        retval = cli.errno.EINTR
    sys.stdout.flush()
    sys.stderr.flush()
    if retval:
        os._exit(retval)
    sys.exit(retval)


if __name__ == "__main__":
    main(sys.argv[2:])  # argv[1] is "ceph", so the command reads as one
