"""The Cache-Control rules the vendordata cache follows (RFC 9111 for a
private cache, RFC 5861's stale-if-error), case by case."""

import datetime

import pytest
import requests.structures

from role_stash import http_cache

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0)
DATE = "Fri, 27 Nov 2026 12:00:00 GMT"


def seconds(value):
    return NOW + datetime.timedelta(seconds=value)


def freshness(**headers):
    return http_cache.freshness(requests.structures.CaseInsensitiveDict(
        {name.replace("_", "-"): value for name, value in headers.items()}),
        NOW)


@pytest.mark.parametrize("headers, fresh_until", [
    ({"Cache_Control": "max-age=60"}, seconds(60)),
    ({"Cache_Control": "MAX-AGE=60"}, seconds(60)),
    ({"Cache_Control": 'max-age="60"'}, seconds(60)),
    ({"Cache_Control": "max-age=60", "Age": "20"}, seconds(40)),
    ({"Cache_Control": "private, max-age=60"}, seconds(60)),
    ({"Cache_Control": "max-age=60, s-maxage=600"}, seconds(60)),
    ({"Cache_Control": "max-age=60", "Expires": "Fri, 27 Nov 2026 13:00:00 "
      "GMT", "Date": DATE}, seconds(60)),
    ({"Expires": "Fri, 27 Nov 2026 12:02:00 GMT", "Date": DATE},
     seconds(120)),
    ({"Expires": "Fri, 27 Nov 2026 12:02:00 GMT", "Date": DATE,
      "Cache_Control": "private"}, seconds(120)),
    ({"Expires": "Fri, 27 Nov 2026 12:02:00 GMT"}, seconds(120)),
], ids=["max-age", "case", "quoted", "age", "private", "s-maxage ignored",
        "max-age over expires", "expires", "expires with private",
        "expires without date"])
def test_an_explicit_lifetime_is_kept(headers, fresh_until):
    kept = freshness(**headers)
    assert kept.fresh_until == fresh_until
    assert kept.stale_until is None


@pytest.mark.parametrize("headers", [
    {},
    {"Cache_Control": "no-store"},
    {"Cache_Control": "no-store, max-age=60"},
    {"Cache_Control": "max-age=abc"},
    {"Cache_Control": "max-age="},
    {"Cache_Control": "max-age=60, max-age=30"},
    {"Cache_Control": "max-age=60 30"},
    {"Cache_Control": "max-age=0"},
    {"Cache_Control": "max-age=60", "Age": "60"},
    {"Cache_Control": "max-age=60", "Age": "soon"},
    {"Cache_Control": "s-maxage=600"},
    {"Cache_Control": "private"},
    {"Cache_Control": "no-cache"},
    {"Expires": "0", "Date": DATE},
    {"Expires": "Fri, 27 Nov 2026 11:00:00 GMT", "Date": DATE},
    {"Expires": "tomorrow"},
], ids=["absent", "no-store", "no-store wins", "not a number", "no value",
        "conflicting", "junk", "max-age=0", "aged out", "bad age",
        "s-maxage only", "private only", "no-cache without validator",
        "expires 0", "expired", "bad expires"])
def test_a_reply_with_no_readable_lifetime_is_not_stored(headers):
    assert freshness(**headers) is None


def test_no_cache_is_stored_to_be_revalidated_every_time():
    kept = freshness(Cache_Control="no-cache", ETag='"v1"',
                     Last_Modified=DATE)
    assert kept == http_cache.Freshness(None, None, '"v1"', DATE)
    assert http_cache.revalidation_headers(kept) == {
        "If-None-Match": '"v1"', "If-Modified-Since": DATE}


def test_stale_if_error_extends_use_after_staleness_but_not_past_must_revalidate():
    kept = freshness(Cache_Control="max-age=60, stale-if-error=30")
    assert (kept.fresh_until, kept.stale_until) == (seconds(60), seconds(90))
    assert kept.keep_until == seconds(90)
    strict = freshness(
        Cache_Control="max-age=60, stale-if-error=30, must-revalidate")
    assert (strict.fresh_until, strict.stale_until) == (seconds(60), None)
    assert freshness(Cache_Control="max-age=60, stale-if-error=x") is None
