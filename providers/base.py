"""What every dynamic provider shares: the Provider base (check and diff from the resource's
schema; each engine call's values normalised and its node's Session at hand), the
replace/update delta, building a node Session from props, and waiting."""

from __future__ import annotations

import contextvars
import functools
import re
import time
import typing
from typing import Any, Callable

from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ResourceProvider, UpdateResult
from pulumi.output import Unknown
from pulumi.runtime import rpc
from pydantic import ValidationError

from providers import errors, lifeline, provider_host
from providers.schema import types as schema
from providers.transport import Host, Session

# Every provider imports this module: inside the provider server, failures read as one
# paragraph, and the process ends with its engine.
errors.install()
lifeline.start()

# Fields of a node's `connection` input (see components/config.py).
CONNECTION_FIELDS = (
    "name",
    "address",
    "port",
    "user",
    "key_file",
    "host_key",
    "known_hosts",
    "trust_on_first_use",
)


def normalize(value: Any) -> Any:
    """The engine hands numbers back as floats and drops None values: undo the first."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


# Connection fields that are state only wherever they appear (admin and peer lists too):
# learning a node's host key changes nothing on any host.
STATE_ONLY = ("state_host_key",)


def _for_diff(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _for_diff(v) for k, v in value.items() if k not in STATE_ONLY}
    if isinstance(value, list):
        return [_for_diff(v) for v in value]
    return value


def delta(old: dict, new: dict, fields: tuple) -> list[str]:
    """Names of the fields whose value differs between old outputs and new inputs."""
    old, new = _for_diff(normalize(old)), _for_diff(normalize(new))
    return [f for f in fields if old.get(f) != new.get(f)]


# Fields that every resource's changes record without host work: a rotated SSH key must
# reach the state, or a later delete would still try the old one.
STATE = ("ssh_private_key",)


def diff_result(
    old: dict,
    new: dict,
    *,
    replaces: tuple,
    updates: tuple,
    state: tuple = (),
    delete_before_replace: bool = False,
) -> DiffResult:
    """The one place a provider's change table turns into a DiffResult: `replaces` need a new
    resource, `updates` host work in place, `state` (timeouts, opt-ins) only a new state."""
    replaced = delta(old, new, replaces)
    changed = replaced + delta(old, new, updates + state + STATE)
    return DiffResult(
        changes=bool(changed),
        replaces=replaced,
        stables=[],
        delete_before_replace=delete_before_replace and bool(replaced),
    )


def session(props: dict, state_host_key: str | None = None) -> Session:
    """A Session for the node described by props['connection'] (+ optional secret key),
    trusting the host key the stack's state recorded for it (`connection.state_host_key`,
    from its Node resource) when the config pins none."""
    conn = normalize(props["connection"])
    host = Host(
        **{k: conn[k] for k in CONNECTION_FIELDS if conn.get(k) is not None},
        state_host_key=state_host_key or _known(conn.get("state_host_key")),
    )
    return Session(host, private_key=props.get("ssh_private_key") or None)


def _known(value: Any) -> str | None:
    """A recorded key, or None while the engine does not know it yet (preview)."""
    return value if isinstance(value, str) and value.startswith(("ssh-", "ecdsa-")) else None


def check_connection(conn: Any, path: str = "connection") -> list[CheckFailure]:
    failures = []
    if not isinstance(conn, dict):
        return [CheckFailure(path, "must be a mapping with name and address")]
    for key in ("name", "address"):
        if not conn.get(key):
            failures.append(CheckFailure(f"{path}.{key}", f"{key} is required"))
    if conn.get("host_key") is None and not (
        conn.get("trust_on_first_use") and conn.get("known_hosts")
    ):
        failures.append(
            CheckFailure(
                f"{path}.host_key",
                "pin the node's SSH host key, or set trust_on_first_use with a known_hosts file",
            )
        )
    return failures


# --- one engine call -------------------------------------------------------------------

CALLS = ("create", "read", "update", "delete")  # the engine's calls that may reach a host


class _Call:
    """One create/read/update/delete: its props, and its node's Session once asked for."""

    def __init__(self, props: dict):
        self.props, self._node = props, None

    def node(self) -> Session:
        if self._node is None:
            self._node = session(self.props)
        return self._node


_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("cephkvm_call")


def _engine_call(method: Callable, name: str) -> Callable:
    """A provider's method as the engine calls it: its values normalised; create, read,
    update and delete with their node at hand (Provider.node), an update that changes only
    state fields recorded without calling it. One provider object serves the engine's
    concurrent calls (one thread each), so the call's node lives in a context variable."""

    @functools.wraps(method)
    def call(self, *args):
        provider_host.widen()
        args = tuple(normalize(a) for a in args)  # (id,) olds?, props: the last is the call's
        if name in ("diff", "update"):  # (id, olds, news)
            args = (args[0], with_new_fields(self, args[1], args[2]), args[2])
        if name not in CALLS:
            return method(self, *args)
        if name == "update" and self.state_only(args[1], args[2]):
            return UpdateResult({**args[1], **args[2]})
        token = _CALL.set(_Call(args[-1]))
        try:
            return method(self, *args)
        finally:
            _CALL.reset(token)

    return call


def with_new_fields(provider, olds: dict, news: dict) -> dict:
    """olds as a state written before some of news' fields existed: those at their
    defaults. A new field then shows no existing resource as changed (its default is what
    the old code did)."""
    model = getattr(provider, "INPUTS", None)
    if model is None:
        return olds
    added = {k: v for k, v in schema.defaults(model).items() if k in news and k not in olds}
    return {**added, **olds}


class Provider(ResourceProvider):
    """A dynamic provider whose inputs are the schema INPUTS (providers/schema/): check fills
    in its defaults and validates with it, diff applies its change classes, and an update
    that changes only state fields (a timeout, an opt-in) is recorded without calling the
    provider's own `update` (no connection). A provider adds `fill` (defaults computed from
    other inputs) and `rules` (checks across fields).

    A provider's own diff, create, read, update and delete get their values normalised;
    create, read, update and delete reach their node as `self.node`."""

    INPUTS: Any
    # The old resource goes first when a replace needs what it holds (a name, a mountpoint).
    DELETE_BEFORE_REPLACE = False
    # Values not computed yet (a cluster's outputs in a preview) count as unchanged.
    SETTLE = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name in ("diff", *CALLS):
            own = cls.__dict__.get(name)
            if own is not None:
                setattr(cls, name, _engine_call(own, name))

    @property
    def node(self) -> Session:
        """The node of the create/read/update/delete under way (its props' `connection`; an
        update's new one), made when first asked for and the same for the rest of the call:
        a call that needs no host opens none. Other nodes (an admin node, a migration's
        source, a cluster's mons) are the provider's own to name."""
        call = _CALL.get(None)
        if call is None:
            raise errors.Failure(
                "a provider's node exists only in create, read, update "
                "and delete (check and diff never open a connection)"
            )
        return call.node()

    def check(self, olds, news):
        provider_host.widen()  # check is every resource's first call
        olds = normalize(olds or {})
        news = self.fill({**schema.defaults(self.INPUTS), **normalize(news)})
        failures = check_schema(self.INPUTS, news)
        if "connection" in self.INPUTS.model_fields:
            failures += check_connection(news.get("connection"))
        news = booleans(self.INPUTS, news)
        return CheckResult(news, failures + self.rules(news, olds))

    def fill(self, news: dict) -> dict:
        return news

    def rules(self, news: dict, olds: dict) -> list[CheckFailure]:
        return []

    def changed(self, olds: dict, news: dict) -> set:
        """The fields of an update that need host work."""
        return set(delta(olds, news, tables(self.INPUTS)[1]))

    def state_only(self, olds: dict, news: dict) -> bool:
        """No field that needs host work changed (a timeout, an opt-in, a rotated key): an
        update then only records the new values, and opens no connection."""
        return not self.changed(olds, news)

    def diff(self, _id, olds, news):
        olds, news = normalize(olds), normalize(news)
        replaces, updates, state = tables(self.INPUTS)
        return diff_result(
            olds,
            settled(olds, news) if self.SETTLE else news,
            replaces=replaces,
            updates=updates,
            state=state,
            delete_before_replace=self.DELETE_BEFORE_REPLACE,
        )


def tables(model) -> tuple[tuple, tuple, tuple]:
    """The schema's (replace, update, state) fields."""
    return tuple(schema.classes(model, change) for change in schema.CHANGES)


def settled(olds: dict, news: dict) -> dict:
    """news with values not computed yet (the cluster's outputs while the cluster itself is
    being updated in a preview) taken as unchanged. Without this, a cluster update previews
    as a replacement of every OSD, pool and mount; `up` diffs again with the real values."""
    return {
        k: olds.get(k) if isinstance(v, Unknown) or v == rpc.UNKNOWN else v for k, v in news.items()
    }


def booleans(model, props: dict) -> dict:
    """props with "true"/"false" (as `pulumi config set` writes them) as booleans in the
    schema's boolean fields: provider code tests truth, and "false" is a true string."""
    out = dict(props)
    for name, field in model.model_fields.items():
        kinds = typing.get_args(field.annotation) or (field.annotation,)
        if bool in kinds and out.get(name) in ("true", "false"):
            out[name] = out[name] == "true"
    return out


def check_schema(model, props: dict) -> list[CheckFailure]:
    """props against the resource's schema (providers/schema/): one failure per problem,
    named by field path. Values the engine does not know yet (preview) are not checked."""
    known, skipped = {}, set()
    for name, value in props.items():
        value = _plain(value)
        if name not in model.model_fields or value is None:
            continue
        if _has_unknown(value):
            skipped.add(name)
        else:
            known[name] = value
    try:
        schema.validate(model, known)
        return []
    except ValidationError as err:
        return [
            CheckFailure(path, message)
            for path, message in schema.messages(err, model)
            if re.split(r"[.\[]", path, maxsplit=1)[0] not in skipped
        ]


def _plain(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _has_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return value == rpc.UNKNOWN or isinstance(value, Unknown)


def wait_until(
    probe: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 1.0,
    what: str,
    report: Callable[[], str] | None = None,
    left: Callable[[], float] | None = None,
) -> Any:
    """Call probe until it returns a truthy value (at least once); on timeout say what we
    waited for and, from report() or else the probe's last answer, what is still wrong.
    The second look comes after a quarter of the interval: right after a change, what it
    waits for is often a moment away (a health check Ceph clears at once, an OSD marked up).
    left(): how much is still to go (read after each look); each new low gives the wait its
    whole timeout again, so it lasts while things keep moving."""
    deadline, low = time.monotonic() + timeout, None
    pause = interval / 4
    while True:
        last = probe()
        if last:
            return last
        now_left = left() if left is not None else None
        if now_left is not None and (low is None or now_left < low):
            deadline, low = time.monotonic() + timeout, now_left
        if time.monotonic() > deadline:
            detail = report() if report else f"(last: {last!r})"
            quiet = " without progress" if left is not None else ""
            raise errors.Timeout(
                f"timed out after {timeout:.0f}s{quiet} waiting for {what}. {detail}".strip()
            )
        time.sleep(pause)
        pause = interval
