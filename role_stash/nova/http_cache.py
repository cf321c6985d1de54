"""What a vendordata reply's headers let a private cache do with it: RFC 9111
freshness and validators, RFC 5861's stale-if-error. No I/O here.

A reply is stored only when its headers say how long it stays fresh
(Cache-Control max-age, else Expires against Date), or say no-cache and
carry a validator to revalidate it with. An absent or malformed
Cache-Control, or an Expires that cannot be read, means "do not store":
vendordata replies may carry secrets, and a cache that guessed a lifetime
(RFC 9111's heuristic freshness) could serve one a service meant to be
fetched again. A reply that varies with anything but the request headers
the drop-in always sends alike (Vary) is not stored either.

Why not the cachecontrol package: it caches the replies of GETs, keyed by
URL, in a store of its own, and guesses lifetimes (its heuristics), where
this cache keeps the replies of POSTs, keyed by what was posted, in the
database its workers share, and never guesses. Its freshness rules are
RFC 9111's, as these are, apparent age included.
"""

import datetime
import email.utils
import re

from role_stash.db.values import Freshness

# Directive names are case-insensitive; a value is a token or a quoted
# string (RFC 9110 5.6.2, 5.6.4).
_DIRECTIVE = re.compile(
    r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*'
    r'(?:=\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\]|\\.)*"))?\s*')
_SECONDS = re.compile(r"[0-9]+")
# RFC 9111 1.2.2: a delta-seconds too large to work with counts as 2**31.
_GREATEST_DELTA = 2**31
# Directives that take delta-seconds, and must then have a valid one.
_DELTA_DIRECTIVES = ("max-age", "stale-if-error", "s-maxage")
# The request headers the drop-in sends alike in every call: a reply that
# varies only with these is the same for every caller of one request.
_SENT_ALIKE = frozenset(("accept", "accept-encoding", "content-type",
                         "user-agent"))


class Malformed(ValueError):
    """A header this cache cannot read: the reply is not stored."""


def cache_control(value):
    """Return {directive: value or None} of a Cache-Control header value;
    Malformed if it cannot be read."""
    directives = {}
    for part in value.split(","):
        if not part.strip():
            continue
        match = _DIRECTIVE.fullmatch(part)
        if match is None:
            raise Malformed(f"Cache-Control directive {part.strip()!r}")
        name, argument = match.group(1).lower(), match.group(2)
        if argument is not None and argument.startswith('"'):
            argument = re.sub(r"\\(.)", r"\1", argument[1:-1])
        if name in _DELTA_DIRECTIVES:
            if argument is None or not _SECONDS.fullmatch(argument):
                raise Malformed(f"Cache-Control {name}={argument!r}")
            if name in directives and directives[name] != argument:
                raise Malformed(f"Cache-Control {name} given twice")
        directives[name] = argument
    return directives


def _http_date(value):
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise Malformed(f"HTTP date {value!r}") from None
    if parsed.tzinfo is None:
        raise Malformed(f"HTTP date {value!r} has no zone")
    return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def freshness(headers, now, requested_at=None):
    """Return the Freshness of a 200 reply received at now (naive UTC) to
    a request sent at requested_at (default: now), from its headers (a
    case-insensitive mapping), or None when it must not be stored."""
    try:
        directives = cache_control(headers.get("Cache-Control") or "")
        if "no-store" in directives or not _same_for_every_caller(headers):
            return None
        age = _current_age(headers, now, requested_at or now)
        etag = headers.get("ETag")
        last_modified = headers.get("Last-Modified")
        if "no-cache" in directives:
            if not (etag or last_modified):
                return None  # nothing to revalidate it with
            return Freshness(None, None, etag, last_modified)
        if "max-age" in directives:
            lifetime = _delta(directives["max-age"])
        elif headers.get("Expires") is not None:
            date = (_http_date(headers["Date"]) if headers.get("Date")
                    else now)
            lifetime = (_http_date(headers["Expires"]) - date).total_seconds()
        else:
            return None  # no explicit lifetime: do not guess one
        remaining = min(lifetime - age, _GREATEST_DELTA)
        if remaining <= 0:
            return None
        fresh_until = now + datetime.timedelta(seconds=remaining)
        stale_until = None
        if ("stale-if-error" in directives
                and "must-revalidate" not in directives):
            stale_until = fresh_until + datetime.timedelta(
                seconds=_delta(directives["stale-if-error"]))
        return Freshness(fresh_until, stale_until, etag, last_modified)
    except ValueError:  # Malformed, or an Age that is not a number
        return None


def _same_for_every_caller(headers):
    """Whether the reply varies with nothing but the headers sent alike
    (no Vary, or one naming only those; never Vary: *)."""
    names = {name.strip().lower()
             for name in (headers.get("Vary") or "").split(",")}
    return names - {""} <= _SENT_ALIKE


def _current_age(headers, now, requested_at):
    """RFC 9111 4.2.3: the age of a reply just received, the larger of
    its apparent age (now less its Date) and its Age corrected by the
    time the request took."""
    age = _delta(headers.get("Age") or 0)
    if age < 0:
        raise Malformed("negative Age")
    corrected_age = age + max(0.0, (now - requested_at).total_seconds())
    apparent_age = 0.0
    if headers.get("Date"):
        apparent_age = max(0.0, (now - _http_date(headers["Date"]))
                           .total_seconds())
    return max(apparent_age, corrected_age)


def _delta(value):
    """delta-seconds, at most _GREATEST_DELTA."""
    return min(int(value), _GREATEST_DELTA)


def revalidation_headers(entry):
    """The conditional request headers of a stored entry's validators."""
    headers = {}
    if entry.etag:
        headers["If-None-Match"] = entry.etag
    if entry.last_modified:
        headers["If-Modified-Since"] = entry.last_modified
    return headers
