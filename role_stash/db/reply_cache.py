"""The repository's operations on cached vendordata replies: the metadata
GET's read of a stash with its replies, and the store of a reply."""

import datetime

from oslo_utils import timeutils
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import dialects
from role_stash.db import validation
from role_stash.db.models import REPLIES
from role_stash.db.values import CachedReply

# A cached reply with validators is kept this long past its freshness, to
# be revalidated (a 304 costs the service less than a whole reply).
REVALIDATE_KEEP = datetime.timedelta(days=1)

_DELETE_REPLY = sa.delete(REPLIES).where(
    REPLIES.c.instance_uuid == sa.bindparam("uuid"),
    REPLIES.c.target == sa.bindparam("target"))
_READ_REPLIES = sa.select(*dialects.REPLY_COLUMNS).where(
    REPLIES.c.instance_uuid == sa.bindparam("uuid")).order_by(REPLIES.c.target)


class ReplyCacheOperations:
    """StashRepository's reads and writes of cached vendordata replies."""

    def get_stash_and_replies(self, instance_uuid, *,
                              expected_project_id=None, context=None):
        """Return (Stash, {target: CachedReply}): an instance's live stash
        and its cached vendordata replies, in one statement (the metadata
        GET with cached vendordata). StashNotFound if no stash is live,
        or, given expected_project_id, if the stash is of another project
        (as get_stash)."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        expected_project_id = validation.optional_text(
            expected_project_id, "expected_project_id")

        def read(statements, connection, instance_uuids):
            stash, replies = statements.fold_with_replies(connection.execute(
                statements.read_one_with_replies,
                {"instance_uuid": instance_uuids[0]}))
            if stash is None or expected_project_id not in (
                    None, stash.project_id):
                return {}
            return {stash.instance_uuid: (stash, replies)}

        found = self._database.bare_read(context, read, [instance_uuid])
        if found is None:
            found = self._call(context, writer=False).read_replica_first(
                read, [instance_uuid])
        found = found.get(instance_uuid)
        if found is None:
            raise exception.StashNotFound(instance_uuid)
        return found

    def get_replies(self, instance_uuid, *, context=None):
        """Return {target: CachedReply} of an instance, stash or not."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        return self._call(context, writer=False).run(lambda connection: {
            row[0]: CachedReply._make(row) for row in connection.execute(
                _READ_REPLIES, {"uuid": instance_uuid})})

    def store_reply(self, instance_uuid, target, body, freshness, *,
                    now=None, request_digest=None):
        """Cache a vendordata service's reply for an instance, in place of
        the one cached before; with freshness None (a reply that must not
        be stored: no-store), only forget the one before. request_digest
        names the request the reply answers (see CachedReply). Return
        whether the reply was stored. A rival worker storing the same
        reply at the same moment wins quietly."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        target = validation.text(target, "target")
        body = validation.reply_body(body)
        freshness = validation.freshness(freshness)
        request_digest = validation.request_digest(request_digest)
        now = (timeutils.utcnow() if now is None
               else validation.utc_datetime(now, "now"))
        keys = {"uuid": instance_uuid, "target": target}

        def write(connection):
            connection.execute(_DELETE_REPLY, keys)
            if freshness is None:
                return False
            keep_until = freshness.keep_until
            if freshness.etag or freshness.last_modified:
                keep_until = max(filter(None, (keep_until,
                                               now + REVALIDATE_KEEP)))
            connection.execute(sa.insert(REPLIES), {
                "instance_uuid": instance_uuid, "target": target,
                "body": body, "etag": freshness.etag,
                "last_modified": freshness.last_modified, "stored_at": now,
                "fresh_until": freshness.fresh_until,
                "stale_until": freshness.stale_until,
                "keep_until": keep_until, "request_digest": request_digest})
            return True

        # The rival's reply is kept: it answers the same request.
        return self._call(None, writer=True).run(
            write, on_duplicate=lambda: False)
