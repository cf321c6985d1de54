"""The values the repository hands out and takes: the stash, with the
vendordata made of it, a cached reply and how long it may be used."""

import dataclasses
import datetime
import typing


class Stash(typing.NamedTuple):
    """What an instance's creator was, as stashed at create time.

    A named tuple rather than a frozen dataclass: a bulk read builds a
    hundred at once, and a tuple is the cheapest immutable value to build.
    """

    instance_uuid: str
    project_id: str
    user_id: str
    roles: tuple[str, ...]
    project_domain_id: str | None = None
    user_domain_id: str | None = None
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None

    def vendordata(self):
        """Return the fields Nova's dynamic vendordata sends for this stash.

        'boot-roles' keeps Nova's legacy form, the role names joined by
        commas. A role name that itself holds a comma cannot be told apart
        from two roles in that form, and a consumer splitting on commas
        would grant roles nobody holds, so such a name is left out of
        'boot-roles'. Names are joined exactly as stashed: a name with
        leading or trailing blanks keeps them, so a consumer that strips
        after splitting sees a different name. The roles attribute always
        has every name, exactly.
        """
        return {
            "project-id": self.project_id,
            "instance-id": self.instance_uuid,
            "boot-roles": ",".join(
                name for name in self.roles if "," not in name),
        }

    def payload(self):
        """Return what a stash write sets: equal payloads make a repeat."""
        return (self.project_id, self.user_id, self.roles,
                self.project_domain_id, self.user_domain_id)


class CachedReply(typing.NamedTuple):
    """A dynamic vendordata service's reply for an instance, as cached: its
    JSON body as received, its validators, how long it may be used (see
    Freshness), and the digest of the request it answered (None for a
    reply cached before digests were kept: it answers no request)."""

    target: str
    body: str
    etag: str | None
    last_modified: str | None
    stored_at: datetime.datetime
    fresh_until: datetime.datetime | None
    stale_until: datetime.datetime | None
    request_digest: str | None = None


class StashWritten(typing.NamedTuple):
    """A live stash's instance, and when the stash was last written (its
    update, else its creation)."""

    instance_uuid: str
    written_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Freshness:
    """How a stored reply may be used.

    fresh_until: served without asking the service before then; None when
    every use must revalidate first (no-cache). stale_until: when the
    service fails, served stale until then (stale-if-error), never under
    must-revalidate. etag and last_modified: the validators a
    revalidation sends back (If-None-Match, If-Modified-Since).
    """

    fresh_until: datetime.datetime | None
    stale_until: datetime.datetime | None
    etag: str | None
    last_modified: str | None

    @property
    def keep_until(self):
        """When the entry is of no more use to anyone, but to revalidate."""
        return max(filter(None, (self.fresh_until, self.stale_until)),
                   default=None)
