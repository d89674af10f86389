"""Small process helpers shared by the lab modules."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

# A clean environment for everything started inside nodes: the caller's PATH (pyenv, venvs)
# must not leak into long-running daemons.
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def sh(*argv, check=True, timeout=60, input=None):
    """Run argv (no shell), capture text output; raise with stderr on failure if check."""
    try:
        res = subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=CLEAN_ENV,
        )
    except subprocess.TimeoutExpired:
        if check:
            raise RuntimeError(f"timed out after {timeout}s: {' '.join(map(str, argv))}")
        return subprocess.CompletedProcess(argv, 124, "", "timeout")
    if check and res.returncode != 0:
        raise RuntimeError(
            f"failed ({res.returncode}): {' '.join(map(str, argv))}\n{res.stderr.strip()}"
        )
    return res


def parallel(fn, items):
    """fn over items in threads, results in order; the first exception is re-raised."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


def log(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)
