"""A login to a web console served by a node (the Ceph dashboard, Cockpit), tried from the
node itself: the password goes on stdin, never on a command line, and only the HTTP status
comes back (0: nothing answered). Certificates are the consoles' own self-signed ones."""

from __future__ import annotations

from providers.transport import Session

SCRIPT = """
import base64, json, ssl, sys, urllib.request, urllib.error
how, url, user = sys.argv[1:4]
password = sys.stdin.read()
if how == "json":  # the Ceph dashboard's REST API
    req = urllib.request.Request(url, json.dumps({"username": user, "password": password}).encode(),
        {"Content-Type": "application/json", "Accept": "application/vnd.ceph.api.v1.0+json"})
else:  # HTTP Basic (Cockpit)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": "Basic " + token})
try:
    print(urllib.request.urlopen(req, context=ssl._create_unverified_context(), timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print(0)
"""


def argv(how: str, url: str, user: str) -> list:
    return ["python3", "-c", SCRIPT, how, url, user]


def status(node: Session, how: str, url: str, user: str, password: str) -> int:
    """how: "json" (POST {username, password}) or "basic" (GET with HTTP Basic)."""
    out = node.run(argv(how, url, user), stdin=password, secrets=(password,)).stdout.strip()
    return int(out) if out.isdigit() else 0
