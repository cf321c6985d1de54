"""Glue for Nova's metadata service: a drop-in for its DynamicVendorData
that sends the creator's project and roles from the stash, and caches each
service's reply in role_stash's database as its Cache-Control allows. No
SQL here, and no import of Nova.

Nova builds `vendordata_dynamic.DynamicVendorData(instance=instance)` in
nova/api/metadata/base.py; a deployment points that line at this class
(see the admin guide's vendordata page). It honours the same options:
[api] vendordata_dynamic_targets, _connect_timeout, _read_timeout,
_ssl_certfile and _failure_fatal, and the keystoneauth1 options of
[vendordata_dynamic_auth], registered (role_stash.conf.vendordata) where
Nova has not.
"""

import dataclasses
import hashlib
import json
import logging
import threading
import urllib.parse

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_utils import timeutils

from role_stash import exception
from role_stash.conf import vendordata as conf_vendordata
from role_stash.db import validation
from role_stash.nova import bounded_http
from role_stash.nova import flights
from role_stash.nova import http_cache
from role_stash.nova import repositories

LOG = logging.getLogger(__name__)

HEADERS = {"Content-Type": "application/json",
           "Accept": "application/json",
           "User-Agent": "openstack-nova-vendordata"}


def targets(conf):
    """Yield (name, url) of each well-formed [api]
    vendordata_dynamic_targets entry, first of a name only, as Nova does."""
    seen = set()
    for target in conf[conf_vendordata.API_GROUP].vendordata_dynamic_targets:
        name, at, url = target.partition("@")
        if not at:
            LOG.warning("Vendordata target %s lacks a name. Skipping", target)
            continue
        if name in seen:
            LOG.warning("Vendordata already contains an entry named %s. "
                        "Skipping", target)
            continue
        seen.add(name)
        yield name, url


# (ConfigOpts, session) pairs: one session per configuration, kept, as
# Nova's service_auth keeps its own, so its connections are reused.
_sessions = []
_sessions_lock = threading.Lock()


def _session(conf):
    """The keystoneauth1 session of conf, authenticated as the service
    user when [vendordata_dynamic_auth] names an account, so every call
    carries a service token."""
    with _sessions_lock:
        for known, session in _sessions:
            if known is conf:
                return session
        auth = ks_loading.load_auth_from_conf_options(
            conf, conf_vendordata.AUTH_GROUP)
        if auth is None:
            LOG.warning("Passing insecure dynamic vendordata requests "
                        "because of missing or incorrect service account "
                        "configuration.")
        session = ks_loading.load_session_from_conf_options(
            conf, conf_vendordata.AUTH_GROUP, auth=auth,
            session=bounded_http.requests_session())
        _sessions.append((conf, session))
        return session


def forget_sessions():
    """Drop the kept sessions: the next call loads its configuration's
    [vendordata_dynamic_auth] anew (after a configuration reload)."""
    with _sessions_lock:
        _sessions.clear()


# Replies larger than this are served but not cached.
MAX_CACHED_BODY = 65536
# A reply's body, decoded, above which the call fails: what the cache's
# column takes, far above any vendordata seen (the call stops reading at
# once, so a larger or endless body costs this much memory at most).
MAX_REPLY_BODY = validation.MAX_REPLY_BODY_BYTES
# Arrays and objects within one another in a reply: far above any
# vendordata's, far below what Python's recursion limit lets a worker read
# and write.
MAX_REPLY_NESTING = 64


def request_digest(url, body):
    """The digest of a POST of body (a JSON value) to url: the cache key of
    its reply, beside the instance and the target's name."""
    return hashlib.sha256(json.dumps(
        [url, body], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _usable(reply, now, until):
    deadline = getattr(reply, until) if reply is not None else None
    return deadline is not None and now < deadline


def _parsed(text):
    """The JSON value of a reply's text; VendordataReplyRefused if it is not
    JSON (an empty body included) or nests too deep to read."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise exception.VendordataReplyRefused(
            f"the reply is not JSON: {type(error).__name__}: "
            f"{str(error)[:80]}") from None


def _nested_too_deep(value):
    """Whether a JSON value nests arrays and objects deeper than
    MAX_REPLY_NESTING: one that Python could read could still be too deep
    for Nova to write out again from deeper in its stack."""
    stack = [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_REPLY_NESTING:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return False


def _json_text(reply):
    """The text of a 200's body: JSON in UTF-8 (RFC 8259 8.1, whatever
    charset it names); VendordataReplyRefused when its Content-Type names
    another media type (none at all is taken as JSON, as Nova does)."""
    media_type = (reply.headers.get("Content-Type") or "").partition(";")[0]
    media_type = media_type.strip().lower()
    if media_type and not (media_type == "application/json"
                           or media_type.endswith("+json")):
        raise exception.VendordataReplyRefused(
            f"the reply's Content-Type is {media_type[:80]}, not JSON")
    try:
        return reply.content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise exception.VendordataReplyRefused(
            f"the reply is not UTF-8: {error.reason} at byte "
            f"{error.start}") from None


def _check_scheme(url):
    """VendordataReplyRefused unless url is http or https, in any case."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise exception.VendordataReplyRefused(
            f"the URL's scheme {scheme!r} is not http or https")


class DynamicVendorData:
    """Nova's DynamicVendorData, with the project and boot roles read from
    the instance's stash, and each service's reply cached in role_stash's
    database as its Cache-Control allows: built from an instance, get()
    returns {target name: the service's reply}."""

    conf = cfg.CONF

    def __init__(self, instance):
        self.instance = instance
        conf_vendordata.register_options(self.conf)
        # Made at the first call, as Nova's.
        self.session = None
        self._fields = None
        self._replies = None

    @property
    def _repository(self):
        return repositories.repository_of_instance(self.instance)

    def _load(self):
        """Read the stash's fields and the cached replies: one statement
        when the instance has a stash."""
        if self._fields is not None:
            return
        try:
            # A stash of another project than the instance's is not its.
            stash, self._replies = self._repository.get_stash_and_replies(
                self.instance.uuid,
                expected_project_id=self.instance.project_id)
            fields = stash.vendordata()
            self._fields = {"project-id": fields["project-id"],
                            "boot-roles": fields["boot-roles"]}
        except exception.StashNotFound:
            LOG.info("Instance %s has no role stash of its project: "
                     "boot-roles from its system_metadata",
                     self.instance.uuid)
            self._fields = self._novas_fields()
            self._replies = self._read_or_warn(
                self._repository.get_replies, self.instance.uuid) or {}
        except exception.DatabaseError as error:
            # The metadata GET goes on as Nova's would, without a cache.
            LOG.warning("role_stash could not read instance %s: %s; "
                        "vendordata from Nova's fields, uncached",
                        self.instance.uuid, error)
            self._fields = self._novas_fields()
            self._replies = {}

    def _novas_fields(self):
        return {"project-id": self.instance.project_id,
                "boot-roles": self.instance.system_metadata.get(
                    "boot_roles", "")}

    def _read_or_warn(self, call, *args, **kwargs):
        """Return call(...), or None, logged, when the database fails: the
        cache is a help, never a reason to fail a metadata GET."""
        try:
            return call(*args, **kwargs)
        except exception.DatabaseError as error:
            LOG.warning("role_stash's vendordata cache failed for instance "
                        "%s: %s", self.instance.uuid, error)
            return None

    def body(self):
        """The JSON body Nova posts, field for field."""
        self._load()
        return {"project-id": None,
                "instance-id": self.instance.uuid,
                "image-id": self.instance.image_ref,
                "user-data": self.instance.user_data,
                "hostname": self.instance.hostname,
                "metadata": self.instance.metadata,
                "boot-roles": None,
                **self._fields}

    def _deadline(self):
        """Seconds a call may take, connect to last byte, and a waiter
        wait for another's: Nova's connect and read timeouts together."""
        api = self.conf[conf_vendordata.API_GROUP]
        return (api.vendordata_dynamic_connect_timeout
                + api.vendordata_dynamic_read_timeout)

    def _do_request(self, name, url):
        body = self.body()
        digest = request_digest(url, body)
        cached = self._replies.get(name)
        if cached is not None and cached.request_digest != digest:
            cached = None  # the reply of another request: of no use here
        if _usable(cached, timeutils.utcnow(), "fresh_until"):
            try:
                return _parsed(cached.body)
            except exception.VendordataReplyRefused:
                cached = None  # not JSON: asked again, and replaced
        key = (self.instance.uuid, name, digest)
        try:
            with flights.flight(key, self._deadline()) as flight:
                if flight.leader:
                    flight.land(self._call(name, url, body, digest, cached))
                text = flight.outcome()
            return _parsed(text)
        except Exception as error:
            # Whatever went wrong of the call, its reply or its
            # authentication, the failure policy decides.
            return self._failed(name, url, cached, error)

    def _call(self, name, url, body, digest, cached):
        """POST body to the service, revalidating cached when there is
        one; cache what its headers allow; return the reply's JSON text,
        or raise."""
        api = self.conf[conf_vendordata.API_GROUP]
        _check_scheme(url)
        if self.session is None:
            self.session = _session(self.conf)
        headers = dict(HEADERS)
        if cached is not None:
            headers.update(http_cache.revalidation_headers(cached))
        requested_at = timeutils.utcnow()
        reply = bounded_http.post(
            self.session, url, json.dumps(body), headers=headers,
            # Verified whatever the scheme's case: for http:// unused.
            verify=api.vendordata_dynamic_ssl_certfile or True,
            connect_timeout=api.vendordata_dynamic_connect_timeout,
            read_timeout=api.vendordata_dynamic_read_timeout,
            max_bytes=MAX_REPLY_BODY)
        now = timeutils.utcnow()
        if reply.status == 304 and cached is not None:
            self._store(name, cached.body, digest, now, requested_at,
                        reply.headers, cached)
            return cached.body
        if reply.status != 200:
            raise exception.VendordataReplyRefused(
                f"HTTP status {reply.status}")
        text = _json_text(reply)
        if _nested_too_deep(_parsed(text)):
            raise exception.VendordataReplyRefused(
                f"the reply nests deeper than {MAX_REPLY_NESTING} levels")
        kept = text if len(reply.content) <= MAX_CACHED_BODY else None
        self._store(name, kept, digest, now, requested_at, reply.headers,
                    cached)
        return text

    def _failed(self, name, url, cached, error):
        """Serve cached while stale-if-error lets it, else do as Nova does:
        fail when [api] vendordata_dynamic_failure_fatal, else {}."""
        if _usable(cached, timeutils.utcnow(), "stale_until"):
            try:
                stale = _parsed(cached.body)
            except exception.VendordataReplyRefused:
                pass
            else:
                LOG.warning("Error from dynamic vendordata service %s at "
                            "%s: %s; serving its reply cached at %s "
                            "(stale-if-error)", name, url, error,
                            cached.stored_at.isoformat())
                return stale
        LOG.warning("Error from dynamic vendordata service %s at %s: %s",
                    name, url, error)
        api = self.conf[conf_vendordata.API_GROUP]
        if api.vendordata_dynamic_failure_fatal:
            raise exception.VendordataFailed(name, url, error) from error
        return {}

    def _store(self, name, body, digest, now, requested_at, headers,
               cached):
        """Cache body, the reply to the request of digest, as headers
        allow, in place of cached; forget cached when they allow nothing
        (or body is None: too large to keep)."""
        freshness = (http_cache.freshness(headers, now, requested_at)
                     if body is not None else None)
        if freshness is not None and cached is not None:
            # A 304 may leave the validators out: the stored ones hold.
            freshness = dataclasses.replace(
                freshness, etag=freshness.etag or cached.etag,
                last_modified=freshness.last_modified or cached.last_modified)
        if freshness is None and name not in self._replies:
            return
        try:
            self._read_or_warn(self._repository.store_reply,
                               self.instance.uuid, name, body or "",
                               freshness, now=now, request_digest=digest)
        except exception.InvalidArgument as error:
            # A reply the cache cannot keep exactly (a validator longer
            # than its column, a NUL in the body) is served, not cached.
            LOG.warning("The reply of dynamic vendordata service %s for "
                        "instance %s is not cached: %s", name,
                        self.instance.uuid, error)

    def get(self):
        """Return {target name: reply} for every configured target."""
        # Read afresh at each GET: Nova keeps this object in its metadata
        # cache, and the replies read before would miss those stored since.
        self._fields = self._replies = None
        return {name: self._do_request(name, url)
                for name, url in targets(self.conf)}
