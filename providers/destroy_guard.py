"""DestroyGuard: makes `pulumi destroy` refuse before it touches any host.

Pulumi deletes dependents before what they depend on, and a destroy run with
`--skip-preview` goes ahead with every unprotected delete (VMs, mounts, bridges) until it
reaches a protected resource. The guard depends on every other resource, so it is the first
one a destroy deletes; it is protected unless the stack allows data loss, so the destroy
stops there, with nothing removed. It touches no host: create, read and update only keep
its inputs. Its name says which setting lifts it, since Pulumi's refusal names the resource.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, ReadResult, ResourceProvider, UpdateResult

from providers import base
from providers.errors import Failure

# --- input schema -----------------------------------------------------------------------
# allow    bool  destroy may go ahead (cephkvm:ceph.allow_data_loss)
# guards   str   what a destroy would remove, for the refusal message

NAME = "destroy-needs-ceph.allow_data_loss"


class DestroyGuardProvider(ResourceProvider):
    def check(self, _olds, news):
        return CheckResult(base.normalize(news), [])

    def diff(self, _id, olds, news):
        return base.diff_result(olds, news, replaces=(), updates=("allow", "guards"))

    def create(self, props):
        return CreateResult("destroy-guard", base.normalize(props))

    def read(self, id_, props):
        return ReadResult(id_, props)

    def update(self, _id, _olds, news):
        return UpdateResult(base.normalize(news))

    def delete(self, _id, props):
        # Only reached without `protect`, i.e. with the opt-in (or a hand `state unprotect`).
        if not base.normalize(props).get("allow"):
            raise Failure(
                f"refusing to destroy {props.get('guards')}: set "
                "cephkvm:ceph.allow_data_loss and every pool's and filesystem's allow_delete "
                "to true, run `pulumi up`, then destroy again. Nothing was removed."
            )


class DestroyGuard(pulumi.dynamic.Resource, module="cephkvm", name="DestroyGuard"):
    def __init__(self, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(DestroyGuardProvider(), NAME, props, opts)
