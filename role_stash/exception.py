"""Every error role_stash raises: one base class, messages that name the fault."""


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
    """A live stash with a different payload already exists for the instance."""

    def __init__(self, instance_uuid):
        self.instance_uuid = instance_uuid
        super().__init__(
            f"instance {instance_uuid} already has a role stash with a "
            f"different payload; pass replace=True to overwrite it")


class MarkerNotFound(RoleStashError, LookupError):
    """The paging marker names no live stash."""

    def __init__(self, marker):
        self.marker = marker
        super().__init__(f"marker {marker} not found")


class DatabaseError(RoleStashError):
    """The database failed; the operation did not complete."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached, or the connection was lost."""
