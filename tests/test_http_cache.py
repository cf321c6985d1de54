"""The Cache-Control rules the vendordata cache follows (RFC 9111 for a
private cache, RFC 5861's stale-if-error), case by case."""

import datetime

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
import requests.structures

from role_stash.nova import http_cache

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


def test_stale_if_error_extends_use_after_staleness_not_past_must_revalidate():
    kept = freshness(Cache_Control="max-age=60, stale-if-error=30")
    assert (kept.fresh_until, kept.stale_until) == (seconds(60), seconds(90))
    assert kept.keep_until == seconds(90)
    strict = freshness(
        Cache_Control="max-age=60, stale-if-error=30, must-revalidate")
    assert (strict.fresh_until, strict.stale_until) == (seconds(60), None)
    assert freshness(Cache_Control="max-age=60, stale-if-error=x") is None


DIRECTIVES = st.sampled_from([
    "max-age", "s-maxage", "stale-if-error", "no-store", "no-cache",
    "must-revalidate", "private", "MAX-AGE", "max-age ", "x"])
DELTAS = st.one_of(st.integers(-5, 2**40).map(str), st.sampled_from(
    ["", '"60"', "9" * 40, "1e3", "-0", "\u0663", " 60"]))
CACHE_CONTROLS = st.lists(st.one_of(
    DIRECTIVES, st.tuples(DIRECTIVES, DELTAS).map("=".join),
    st.text(max_size=12)), max_size=4).map(", ".join)
HTTP_DATES = st.one_of(
    st.datetimes(timezones=st.just(datetime.timezone.utc)).map(
        lambda moment: moment.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.text(max_size=30), st.sampled_from(["0", "-1", "Fri, 31 Dec 9999 "
                                           "23:59:59 GMT"]))
HEADERS = st.fixed_dictionaries({}, optional={
    "Cache-Control": CACHE_CONTROLS, "Age": DELTAS, "Expires": HTTP_DATES,
    "Date": HTTP_DATES, "ETag": st.text(max_size=300),
    "Last-Modified": HTTP_DATES})


def test_any_headers_give_a_freshness_or_none_never_an_error(
        generated_cases):
    """A service's headers are input from outside: whatever they say, the
    cache stores the reply for a bounded time or not at all (a huge
    max-age or Expires overflowed Python's datetime, failing the GET)."""
    @given(headers=HEADERS, now=st.datetimes(
        min_value=datetime.datetime(1970, 1, 1),
        max_value=datetime.datetime(2100, 1, 1)))
    @settings(max_examples=settings.default.max_examples * 4)
    def check(headers, now):
        generated_cases["no database"] += 1
        result = http_cache.freshness(
            requests.structures.CaseInsensitiveDict(headers), now)
        if result is None:
            return
        limit = now + datetime.timedelta(seconds=2**32)
        for moment in (result.fresh_until, result.stale_until):
            assert moment is None or now < moment <= limit
        assert result.keep_until or result.etag or result.last_modified

    check()


def test_a_far_expires_is_cached_for_the_greatest_lifetime():
    assert freshness(Expires="Fri, 31 Dec 9999 23:59:59 GMT",
                     Date="Mon, 01 Jan 1900 00:00:00 GMT").fresh_until == (
        seconds(2**31))


@pytest.mark.parametrize("vary, stored", [
    ("*", False), ("Accept, *", False), ("X-Auth-Token", False),
    ("Cookie", False), ("Accept", True), ("accept-encoding, User-Agent", True),
    ("", True)])
def test_a_reply_varying_with_more_than_every_call_sends_is_not_stored(
        vary, stored):
    kept = freshness(Cache_Control="max-age=60", Vary=vary)
    assert (kept is not None) == stored


def test_the_age_counts_from_the_replys_date():
    """RFC 9111 4.2.3: a reply dated an hour before it arrived is an hour
    old, whatever its Age header says."""
    hour_ago = "Fri, 27 Nov 2026 11:00:00 GMT"
    assert freshness(Cache_Control="max-age=600", Date=hour_ago) is None
    assert freshness(Cache_Control="max-age=7200", Date=hour_ago
                     ).fresh_until == seconds(3600)
    assert freshness(Cache_Control="max-age=7200", Date=hour_ago,
                     Age="5400").fresh_until == seconds(1800)
    # A Date ahead of the cache's clock makes the reply no younger.
    assert freshness(Cache_Control="max-age=60",
                     Date="Fri, 27 Nov 2026 13:00:00 GMT").fresh_until == (
        seconds(60))


def test_the_time_the_request_took_counts_in_the_age():
    kept = http_cache.freshness(requests.structures.CaseInsensitiveDict(
        {"Cache-Control": "max-age=60", "Age": "10"}), NOW,
        requested_at=NOW - datetime.timedelta(seconds=5))
    assert kept.fresh_until == seconds(45)
