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

import contextlib
import dataclasses
import json
import logging
import threading

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_utils import timeutils

from role_stash import exception
from role_stash.conf import vendordata as conf_vendordata
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
        auth = ks_loading.load_auth_from_conf_options(conf, conf_vendordata.AUTH_GROUP)
        if auth is None:
            LOG.warning("Passing insecure dynamic vendordata requests "
                        "because of missing or incorrect service account "
                        "configuration.")
        session = ks_loading.load_session_from_conf_options(
            conf, conf_vendordata.AUTH_GROUP, auth=auth)
        _sessions.append((conf, session))
        return session


def forget_sessions():
    """Drop the kept sessions: the next call loads its configuration's
    [vendordata_dynamic_auth] anew (after a configuration reload)."""
    with _sessions_lock:
        _sessions.clear()


# Replies larger than this are served but not cached.
MAX_CACHED_BODY = 65536

# (instance UUID, target) -> [lock, users]: concurrent misses of one entry
# in one process make one call.
_calls = {}
_calls_lock = threading.Lock()


@contextlib.contextmanager
def _one_call_at_a_time(key):
    """Hold the lock of key; yield whether another call held it first (its
    reply may now be cached)."""
    with _calls_lock:
        entry = _calls.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    lock = entry[0]
    waited = not lock.acquire(blocking=False)
    if waited:
        lock.acquire()
    try:
        yield waited
    finally:
        lock.release()
        with _calls_lock:
            entry[1] -= 1
            if not entry[1]:
                del _calls[key]


def _usable(reply, now, until):
    deadline = getattr(reply, until) if reply is not None else None
    return deadline is not None and now < deadline


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
            stash, self._replies = self._repository.get_stash_and_replies(
                self.instance.uuid)
            fields = stash.vendordata()
            self._fields = {"project-id": fields["project-id"],
                            "boot-roles": fields["boot-roles"]}
        except exception.StashNotFound:
            LOG.info("Instance %s has no role stash: boot-roles from "
                     "its system_metadata", self.instance.uuid)
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

    def _do_request(self, name, url):
        self._load()
        cached = self._replies.get(name)
        if _usable(cached, timeutils.utcnow(), "fresh_until"):
            return json.loads(cached.body)
        with _one_call_at_a_time((self.instance.uuid, name)) as waited:
            if waited:
                cached = (self._read_or_warn(self._repository.get_replies,
                                             self.instance.uuid)
                          or {}).get(name)
                if _usable(cached, timeutils.utcnow(), "fresh_until"):
                    return json.loads(cached.body)
            return self._call(name, url, cached)

    def _call(self, name, url, cached):
        """POST to the service, revalidating cached when there is one;
        cache what its headers allow; on failure serve cached while
        stale-if-error lets it, else do as Nova does."""
        api = self.conf[conf_vendordata.API_GROUP]
        if self.session is None:
            self.session = _session(self.conf)
        verify = url.startswith("https://")
        if verify and api.vendordata_dynamic_ssl_certfile:
            verify = api.vendordata_dynamic_ssl_certfile
        headers = dict(HEADERS)
        if cached is not None:
            headers.update(http_cache.revalidation_headers(cached))
        try:
            reply = self.session.request(
                url, "POST", data=json.dumps(self.body()), headers=headers,
                verify=verify, timeout=(api.vendordata_dynamic_connect_timeout,
                                        api.vendordata_dynamic_read_timeout))
            now = timeutils.utcnow()
            if reply.status_code == 304 and cached is not None:
                self._store(name, cached.body, now, reply.headers, cached)
                return json.loads(cached.body)
            if reply.status_code != 200:
                raise ValueError(f"HTTP status {reply.status_code}")
            answer = json.loads(reply.text) if reply.text else {}
        except (TypeError, ValueError, ks_exceptions.ConnectionError,
                ks_exceptions.HttpError) as error:
            if _usable(cached, timeutils.utcnow(), "stale_until"):
                LOG.warning("Error from dynamic vendordata service %s at %s: "
                            "%s; serving its reply cached at %s "
                            "(stale-if-error)", name, url, error,
                            cached.stored_at.isoformat())
                return json.loads(cached.body)
            LOG.warning("Error from dynamic vendordata service %s at %s: %s",
                        name, url, error)
            if api.vendordata_dynamic_failure_fatal:
                raise exception.VendordataFailed(name, url, error) from error
            return {}
        if reply.status_code == 200:
            body = reply.text if len(reply.content) <= MAX_CACHED_BODY else None
            self._store(name, body, now, reply.headers, cached)
        return answer

    def _store(self, name, body, now, headers, cached):
        """Cache body as headers allow, in place of cached; forget cached
        when they allow nothing (or body is None: too large to keep)."""
        freshness = (http_cache.freshness(headers, now)
                     if body is not None else None)
        if freshness is not None and cached is not None:
            # A 304 may leave the validators out: the stored ones hold.
            freshness = dataclasses.replace(
                freshness, etag=freshness.etag or cached.etag,
                last_modified=freshness.last_modified or cached.last_modified)
        if freshness is None and cached is None:
            return
        try:
            self._read_or_warn(self._repository.store_reply,
                               self.instance.uuid, name, body or "",
                               freshness, now=now)
        except exception.InvalidArgument as error:
            # A reply the cache cannot keep exactly (a validator longer
            # than its column, a NUL in the body) is served, not cached.
            LOG.warning("The reply of dynamic vendordata service %s for "
                        "instance %s is not cached: %s", name,
                        self.instance.uuid, error)

    def get(self):
        """Return {target name: reply} for every configured target."""
        return {name: self._do_request(name, url)
                for name, url in targets(self.conf)}
