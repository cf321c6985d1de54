"""Every error role_stash raises: one base class, messages naming the fault."""

from oslo_db import exception as db_exc


class RoleStashError(Exception):
    """Base class of every error role_stash raises."""


class InvalidArgument(RoleStashError, ValueError):
    """An argument failed validation; nothing was sent to the database."""

    def __init__(self, field, reason):
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class StashNotFound(RoleStashError, LookupError):
    """No live stash exists for the instance."""

    def __init__(self, instance_uuid):
        self.instance_uuid = instance_uuid
        super().__init__(f"no role stash for instance {instance_uuid}")


class StashConflict(RoleStashError):
    """A live stash with another payload already exists for the instance."""

    def __init__(self, instance_uuid):
        self.instance_uuid = instance_uuid
        super().__init__(
            f"instance {instance_uuid} has a live role stash with a "
            f"different payload, or one that changed meanwhile; replace it "
            f"explicitly (replace=True, role-stash-manage stash --replace)")


class MarkerNotFound(RoleStashError, LookupError):
    """The paging marker names no live stash."""

    def __init__(self, marker):
        self.marker = marker
        super().__init__(f"marker {marker} not found")


class VendordataFailed(RoleStashError):
    """A dynamic vendordata service did not answer 200 with JSON, and
    [api] vendordata_dynamic_failure_fatal is set: the metadata request,
    or with config drive the build, fails."""

    def __init__(self, target, url, cause):
        self.target = target
        self.url = url
        super().__init__(
            f"dynamic vendordata service {target} at {url} failed: {cause}; "
            f"[api] vendordata_dynamic_failure_fatal is set, so this fails")


class VendordataReplyRefused(RoleStashError):
    """A dynamic vendordata service's answer that is not a reply to use:
    a status other than 200 (a redirect included), no whole reply before
    the call's deadline, a body over the cap, or a body that is not JSON
    text. The drop-in then follows its failure policy."""


class DatabaseError(RoleStashError):
    """The database failed; the operation did not complete."""


# The two below are also oslo.db's, so that a caller's wrap_db_retry (Nova
# retries a whole server create on deadlock) still sees them for what they
# are when a stash joined the caller's transaction.
class DatabaseDeadlock(DatabaseError, db_exc.DBDeadlock):
    """The transaction was chosen as a deadlock victim and rolled back."""


class DatabaseUnavailable(DatabaseError, db_exc.DBConnectionError):
    """The database could not be reached, or the connection was lost."""
