"""Argument checks run before any SQL: each returns the normalized value."""

import collections.abc
import datetime
import re

from role_stash import exception
from role_stash.db import models
from role_stash.db import values

# The one form Nova writes: 8-4-4-4-12 hex digits; stored in lower case.
_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

MAX_LIMIT = 1000
MAX_BULK = 1000
# Above SQLite's 32766 bound parameters a purge batch could not be deleted.
MAX_BATCH = 10000
# A cached reply's body, in UTF-8: far above what the vendordata drop-in
# stores, within what every backend takes in one statement (MariaDB's
# default max_allowed_packet, MEDIUMTEXT).
MAX_REPLY_BODY_BYTES = 1024 * 1024
# Roles of one stash: Keystone's own cap on a listing, its [DEFAULT]
# max_db_limit's default. Keystone bounds neither a user's role
# assignments nor the roles a token carries, but lists no more than that
# many in one response, role assignments included: a user holding more
# could not see them listed. A stash's read costs a row per role (and per
# reply), and each role is in every metadata GET's body.
MAX_ROLES = 1000
# How much of a refused value an error message repeats.
_SHOWN = 40


def _fail(field, reason):
    raise exception.InvalidArgument(field, reason)


def _type_name(value):
    return type(value).__name__


def instance_uuid(value, field="instance_uuid"):
    """Return the UUID in canonical lower-case form."""
    if not isinstance(value, str):
        _fail(field, f"expected a UUID string, got {_type_name(value)}")
    normalized = value.lower()
    if not _UUID.fullmatch(normalized):
        _fail(field, f"{value[:_SHOWN]!r} is not a UUID of the form "
                     "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
    return normalized


def text(value, field, max_length=models.ID_LENGTH):
    """Return a non-empty, printable, trimmed string of at most max_length."""
    if not isinstance(value, str):
        _fail(field, f"expected a string, got {_type_name(value)}")
    if not value:
        _fail(field, "must not be empty")
    if len(value) > max_length:
        _fail(field, f"longer than {max_length} characters ({len(value)})")
    if not value.isprintable():
        # Unicode's Other and Separator categories but the ASCII space:
        # control characters (NUL among them), invisible and bidi-override
        # format characters, line separators, lone surrogates, unassigned
        # code points; a name that shows other than it is, or breaks a line.
        _fail(field, "contains a control, format, separator or unassigned "
                     "character")
    if value != value.strip():
        _fail(field, "has leading or trailing whitespace")
    return value


def optional_text(value, field):
    """Return None, or the string checked as text()."""
    return None if value is None else text(value, field)


# Keystone's role name: 1 to 255 characters, one of them not whitespace.
_NOT_BLANK = re.compile(r"\S")


def role_name(value, field):
    """Return a role name Keystone accepts, unchanged, if every backend can
    store it: not NUL (PostgreSQL refuses it), not a lone surrogate (no
    UTF-8 encodes it). Blanks, leading, trailing or not ASCII, are kept."""
    if not isinstance(value, str):
        _fail(field, f"expected a string, got {_type_name(value)}")
    if not value:
        _fail(field, "must not be empty")
    if len(value) > models.ROLE_NAME_LENGTH:
        _fail(field, f"longer than {models.ROLE_NAME_LENGTH} characters "
                     f"({len(value)})")
    if not _NOT_BLANK.search(value):
        _fail(field, "holds only whitespace")
    if "\x00" in value:
        _fail(field, "contains NUL, which no database stores")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(field, "contains a lone surrogate, which no UTF-8 database "
                     "stores")
    return value


def role_names(value, field="roles"):
    """Return the role names as a tuple, first occurrences kept in order,
    at most MAX_ROLES of them."""
    if not isinstance(value, (list, tuple)):
        _fail(field, f"expected a list of role names, got {_type_name(value)}")
    names = tuple(dict.fromkeys(
        role_name(name, f"{field}[{index}]")
        for index, name in enumerate(value)))
    if len(names) > MAX_ROLES:
        _fail(field, f"more than {MAX_ROLES} roles ({len(names)})")
    return names


def stash(uuid, project_id, user_id, roles, project_domain_id=None,
          user_domain_id=None, prefix=""):
    """Return the Stash of validated, normalized arguments; the fields an
    error names start with prefix."""
    return values.Stash(
        instance_uuid=instance_uuid(uuid, f"{prefix}instance_uuid"),
        project_id=text(project_id, f"{prefix}project_id"),
        user_id=text(user_id, f"{prefix}user_id"),
        roles=role_names(roles, f"{prefix}roles"),
        project_domain_id=optional_text(
            project_domain_id, f"{prefix}project_domain_id"),
        user_domain_id=optional_text(
            user_domain_id, f"{prefix}user_domain_id"))


def instance_uuids(value, field="instance_uuids"):
    """Return the distinct UUIDs, canonical, in the order given."""
    if isinstance(value, (str, bytes)) or not isinstance(
            value, collections.abc.Collection):
        _fail(field, "expected a collection of UUIDs, got "
                     f"{_type_name(value)}")
    if len(value) > MAX_BULK:
        _fail(field, f"more than {MAX_BULK} UUIDs ({len(value)})")
    # All at once (a bulk read's 100 in half the time of one by one); one
    # by one only to name the first bad item.
    normalized = [item.lower() for item in value if isinstance(item, str)]
    if len(normalized) != len(value) or not all(
            map(_UUID.fullmatch, normalized)):
        for index, item in enumerate(value):
            instance_uuid(item, f"{field}[{index}]")
    return tuple(dict.fromkeys(normalized))


def positive_int(value, field, most=None):
    """Return value if it is an int from 1 to most (bools refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(field, f"expected an integer, got {_type_name(value)}")
    if value < 1:
        _fail(field, f"must be at least 1, got {value}")
    if most is not None and value > most:
        _fail(field, f"must be at most {most}, got {value}")
    return value


def non_negative_int(value, field, most=None):
    """Return value if it is an int from 0 to most (bools refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(field, f"expected an integer, got {_type_name(value)}")
    if value < 0:
        _fail(field, f"must not be negative, got {value}")
    if most is not None and value > most:
        _fail(field, f"must be at most {most}, got {value}")
    return value


def limit(value, field="limit"):
    """Return the page size: MAX_LIMIT when None, capped at MAX_LIMIT."""
    if value is None:
        return MAX_LIMIT
    return min(positive_int(value, field), MAX_LIMIT)


def utc_datetime(value, field):
    """Return a naive UTC datetime; an aware one is converted."""
    if not isinstance(value, datetime.datetime):
        _fail(field, f"expected a datetime, got {_type_name(value)}")
    if value.tzinfo is not None:
        try:
            value = value.astimezone(datetime.timezone.utc)
        except OverflowError:
            _fail(field, f"{value.isoformat()} has no UTC equivalent in "
                         "years 1 to 9999")
        value = value.replace(tzinfo=None)
    return value


def request_identity(value, field="context"):
    """Return (project_id, user_id, roles, project_domain_id,
    user_domain_id) of a request context (Nova's RequestContext): these
    attributes only, never its token; the domain ids may be absent."""
    try:
        project_id, user_id, roles = (value.project_id, value.user_id,
                                      value.roles)
    except AttributeError:
        _fail(field, f"expected a request context with project_id, user_id "
                     f"and roles, got {_type_name(value)}")
    return (project_id, user_id, roles,
            getattr(value, "project_domain_id", None),
            getattr(value, "user_domain_id", None))


def flag(value, field):
    """Return value if it is a bool."""
    if not isinstance(value, bool):
        _fail(field, f"expected True or False, got {_type_name(value)}")
    return value


def reply_body(value, field="body"):
    """Return a reply's JSON text if every backend stores it: a string of
    at most MAX_REPLY_BODY_BYTES in UTF-8, without NUL (PostgreSQL refuses
    it) or a lone surrogate (no UTF-8 encodes it)."""
    if not isinstance(value, str):
        _fail(field, "expected the reply's JSON text, got "
                     f"{_type_name(value)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        _fail(field, "contains a lone surrogate, which no UTF-8 database "
                     "stores")
    if size > MAX_REPLY_BODY_BYTES:
        _fail(field, f"longer than {MAX_REPLY_BODY_BYTES} bytes in UTF-8 "
                     f"({size})")
    if "\x00" in value:
        _fail(field, "contains NUL, which no database stores")
    return value


_DIGEST = re.compile(r"[0-9a-f]{64}")


def request_digest(value, field="request_digest"):
    """Return None, or a SHA-256 digest in lower-case hex."""
    if value is None:
        return None
    if not isinstance(value, str):
        _fail(field, f"expected a hex SHA-256 digest, got "
                     f"{_type_name(value)}")
    if not _DIGEST.fullmatch(value):
        _fail(field, f"{value[:_SHOWN]!r} is not a SHA-256 digest in "
                     "lower-case hex")
    return value


def freshness(value, field="freshness"):
    """Return None, or a Freshness with naive UTC times (aware
    ones converted), validators that are ids (a Last-Modified of at most
    LAST_MODIFIED_LENGTH), and a lifetime or a validator to use it by."""
    if value is None:
        return None
    if not isinstance(value, values.Freshness):
        _fail(field, f"expected a Freshness or None, got "
                     f"{_type_name(value)}")
    fresh_until, stale_until = (
        None if moment is None else utc_datetime(moment, f"{field}.{name}")
        for name, moment in (("fresh_until", value.fresh_until),
                             ("stale_until", value.stale_until)))
    etag = optional_text(value.etag, f"{field}.etag")
    last_modified = None if value.last_modified is None else text(
        value.last_modified, f"{field}.last_modified",
        models.LAST_MODIFIED_LENGTH)
    if not (fresh_until or stale_until or etag or last_modified):
        _fail(field, "has neither a lifetime nor a validator to be used by")
    return values.Freshness(fresh_until, stale_until, etag, last_modified)
