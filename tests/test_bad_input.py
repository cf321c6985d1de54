"""Bad input, generated: every public call of the repository takes a value
and reads it back exactly, or refuses it with InvalidArgument naming the
field before any statement is sent, on every backend.

hypothesis draws the values: wrong types, None, empty, blanks, overlong
(256 characters, 1 MB), NUL and other control characters, lone
surrogates, SQL-looking text, malformed and differently-cased UUIDs, huge
and repeating role lists. The oracles below restate the documented rules
(doc/source/reference/api.rst, "What is validated") with Unicode
categories and plain string tests, apart from role_stash.db.validation,
and say which fields a value breaks.
Each test runs its examples on one cleaned repository, every example under
UUIDs of its own, and checks the tables hold exactly what was accepted.
The profiles and the count of cases: tests/fixtures/generated_cases.py.
"""

import collections.abc
import contextlib
import datetime
import functools
import io
import json
import re
import unicodedata
import uuid

from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.cmd import manage as role_stash_manage
from role_stash.cmd import stash_commands
from role_stash.db import api
from role_stash.db import models
from role_stash.db import validation
from role_stash.nova import http_cache

# --- The oracles: the documented rules -------------------------------------

_UUID_FORM = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}")
# Unicode's Other and Separator categories: what does not show as itself.
_UNSEEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}
ID_LENGTH = ROLE_LENGTH = 255
MAX_BULK = MAX_LIMIT = 1000
MAX_BATCH = 10000
MAX_BODY_BYTES = 1024 * 1024


def is_uuid(value):
    """The 8-4-4-4-12 form, hex digits in either case."""
    return isinstance(value, str) and _UUID_FORM.fullmatch(value) is not None


def is_id(value, most=ID_LENGTH):
    """An id: a string of 1 to most characters, each shown as itself (the
    ASCII space the one separator), no blank at either end."""
    return (isinstance(value, str) and 0 < len(value) <= most
            and all(character == " "
                    or unicodedata.category(character) not in _UNSEEN
                    for character in value)
            and not value.startswith(" ") and not value.endswith(" "))


def is_role_name(value):
    """Keystone's role name (1 to 255 characters, one not whitespace), less
    NUL and lone surrogates, which no backend stores."""
    return (isinstance(value, str) and 0 < len(value) <= ROLE_LENGTH
            and any(not character.isspace() for character in value)
            and "\x00" not in value
            and not any("\ud800" <= character <= "\udfff"
                        for character in value))


def is_flag(value):
    return value is True or value is False


def is_count(value, most):
    return (isinstance(value, int) and not isinstance(value, bool)
            and 1 <= value <= most)


def in_utc(value):
    """A datetime as naive UTC, or None if it is not one or has no UTC
    equivalent (an aware one at the edge of the calendar)."""
    if not isinstance(value, datetime.datetime):
        return None
    if value.utcoffset() is None:
        return value
    try:
        return value.replace(tzinfo=None) - value.utcoffset()
    except OverflowError:
        return None


def bad_role_list(value, field="roles"):
    """The fields a roles argument breaks."""
    if not isinstance(value, (list, tuple)):
        return {field}
    bad = {f"{field}[{index}]" for index, name in enumerate(value)
           if not is_role_name(name)}
    if not bad and len(set(value)) > validation.MAX_ROLES:
        bad.add(field)  # more distinct roles than a stash holds
    return bad


def storable_body(value):
    try:
        encoded = value.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        return False
    return b"\x00" not in encoded and len(encoded) <= MAX_BODY_BYTES


# --- The values drawn --------------------------------------------------------

WRONG_TYPES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(),
    st.binary(max_size=40), st.builds(bytearray, st.binary(max_size=8)),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.sets(st.integers(), max_size=3),
    st.just(object()), st.just(uuid.UUID(int=7)),
    st.just(datetime.datetime(2026, 1, 1)), st.just(Ellipsis),
)
BLANKS = st.text(st.sampled_from(
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000"),
    min_size=1, max_size=6)
UNSEEN_CHARACTERS = st.one_of(
    st.sampled_from("\x00\x01\x07\x1b\x7f\x9f\u200b\u200e\u202e\u2066"
                    "\ufeff\ue000\U000f0000\U0010ffff\u0378\ufffe"),
    st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cn"]))
SURROGATES = st.characters(categories=["Cs"])
SQL_LIKE = st.sampled_from([
    "'; DROP TABLE role_stashes; --", "' OR '1'='1", '" OR 1=1 --',
    "NULL", "null", "%s", "%(name)s", ":name", "?", "$1", "\\", "\\'", "`",
    "{}", '{"a", NULL}', "{a,b}", "ARRAY['x']", "/* */", "-- x", "%", "_",
    "*", "1; SELECT pg_sleep(10)", "admin' --", "\\x00", "0x00", "\\N",
])
# Names that differ from a common one only in case, unicode form or blanks.
TWINS = st.sampled_from([
    "admin", "Admin", "ADMIN", "caf\u00e9", "cafe\u0301", "member",
    "member ", " member", "\uff4d\uff45\uff4d\uff42\uff45\uff52", "\u0131",
    "i", "I", "\u0130", "stra\u00dfe", "strasse", "\u1e9e", "\u212a", "K",
])
OVERLONG = st.sampled_from([ID_LENGTH, ID_LENGTH + 1, 1000, 1_000_000]
                           ).flatmap(lambda length: st.sampled_from(
                               ["r", "\u00e9", "\U0001f600", " "]).map(
                                   lambda character: character * length))


def with_inside(pieces):
    """A plain text with one of pieces somewhere in it."""
    return st.tuples(st.text(max_size=8), pieces, st.text(max_size=8)).map(
        "".join)


NASTY_TEXT = st.one_of(
    st.just(""), BLANKS, OVERLONG, SQL_LIKE, TWINS, st.text(max_size=30),
    with_inside(UNSEEN_CHARACTERS), with_inside(SURROGATES),
    with_inside(BLANKS), st.text(min_size=1, max_size=8).map(
        lambda text: f" {text}"),
)
NASTY = st.one_of(NASTY_TEXT, WRONG_TYPES)
IDS = st.one_of(st.sampled_from(["p-1", "0123456789abcdef", "d" * 255,
                                 "\U0001f600 proj", "caf\u00e9"]), NASTY)
OPTIONAL_IDS = st.one_of(st.none(), IDS)
FLAGS = st.one_of(st.booleans(), st.sampled_from([0, 1, "yes", None, "True"]))
ROLE_NAMES = st.one_of(TWINS, NASTY_TEXT, st.text(min_size=1, max_size=20),
                       WRONG_TYPES)


def huge_role_list(length):
    """length names, half of them repeats."""
    return [f"role-{index % max(length // 2, 1)}" for index in range(length)]


ROLE_LISTS = st.one_of(
    st.lists(ROLE_NAMES, max_size=6),
    st.lists(ROLE_NAMES, max_size=6).map(tuple),
    st.lists(TWINS, max_size=12),
    st.lists(st.text(min_size=1, max_size=20), max_size=4).map(
        lambda names: names + names),
    st.sampled_from([1000, 3000]).map(huge_role_list),
    NASTY_TEXT, WRONG_TYPES,
    st.sets(st.sampled_from(["member", "reader"])),
)


# A UUID argument is drawn as what to make of the UUID the example aims at
# (one of its own, or a stash the test made): the same value, a case of
# it, or a spoiling of it; or a value with no UUID in it at all.
def as_is(aim):
    return aim


def cased(mask, aim):
    """aim with the characters whose bit is set in mask in upper case."""
    return "".join(character.upper() if mask >> index & 1 else character
                   for index, character in enumerate(aim))


def replaced(index, character, aim):
    return aim[:index] + character + aim[index + 1:]


def wrapped(before, after, aim):
    return before + aim + after


def cut(length, aim):
    return aim[:length]


def without_dashes(aim):
    return aim.replace("-", "")


def as_bytes(aim):
    return aim.encode()


def as_uuid_object(aim):
    return uuid.UUID(aim)


def given_value(value, aim):
    return value


UUID_SPELLINGS = st.one_of(
    st.just(as_is), st.just(str.upper),
    st.builds(functools.partial, st.just(cased),
              st.integers(0, 2**36 - 1)),
    st.builds(functools.partial, st.just(replaced), st.integers(0, 35),
              st.sampled_from("gGzZ-_ \x00\u0663\uff10\uff41\u212a\u00e9")),
    st.builds(functools.partial, st.just(wrapped), st.sampled_from(
        ["", "{", "urn:uuid:", " ", "\n", "0", "\x00", "'"]), st.sampled_from(
            ["", "}", " ", "\n", "0", "\x00", "' OR '1'='1"])),
    st.builds(functools.partial, st.just(cut), st.integers(0, 35)),
    st.just(without_dashes), st.just(as_bytes), st.just(as_uuid_object),
    st.builds(functools.partial, st.just(given_value), NASTY),
)


# Values each argument takes: rich, but valid.
SHOWN_CHARACTERS = st.characters(codec="utf-8",
                                 categories=["L", "M", "N", "P", "S"])
VALID_IDS = st.one_of(
    st.sampled_from(["p-1", "0123456789abcdef", "d" * 255, "a b",
                     "\U0001f600 proj", "caf\u00e9", "NULL", "' OR '1'='1"]),
    st.text(st.one_of(SHOWN_CHARACTERS, st.just(" ")), min_size=1,
            max_size=40).map(lambda text: text.strip(" ") or "x"),
    # Of the longest: a short draw repeated (a long draw costs hypothesis
    # much more to generate and mutate).
    st.text(SHOWN_CHARACTERS, min_size=1, max_size=3).map(
        lambda text: (text * ID_LENGTH)[:ID_LENGTH]))
VALID_ROLE_NAMES = st.one_of(
    TWINS, SQL_LIKE, st.sampled_from([" leading", "trailing ", "tab\there",
                                      "line\nbreak", "del\x7f", "\u200b",
                                      "adm\u202ein", "\U0001f600" * 255,
                                      "r" * 255, "a,b"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"),
            min_size=1, max_size=30).filter(is_role_name))
VALID_ROLE_LISTS = st.one_of(
    st.lists(VALID_ROLE_NAMES, max_size=8),
    st.lists(VALID_ROLE_NAMES, max_size=8).map(tuple),
    st.lists(VALID_ROLE_NAMES, min_size=1, max_size=4).map(
        lambda names: names + names[::-1]))
VALID_SPELLINGS = st.one_of(
    st.just(as_is), st.just(str.upper),
    st.builds(functools.partial, st.just(cased),
              st.integers(0, 2**36 - 1)))


def mostly(valid, nasty):
    """valid three times in four, else nasty."""
    return st.integers(0, 3).flatmap(
        lambda roll: nasty if roll == 0 else valid)


@st.composite
def arguments(draw, valid, nasty):
    """{name: value}, each drawn from valid[name], but those drawn to be
    spoiled (none in half of the cases, one in a third, more in the
    rest), drawn from nasty[name] (a nasty value may be valid too)."""
    names = sorted(valid)
    roll = draw(st.integers(0, 5))
    if roll < 3:
        spoiled = set()
    elif roll < 5:
        spoiled = {draw(st.sampled_from(names))}
    else:
        spoiled = draw(st.sets(st.sampled_from(names), min_size=2))
    return {name: draw(nasty[name] if name in spoiled else valid[name],
                       label=name) for name in names}


class Context:
    """What Nova's RequestContext carries that role_stash may read (and a
    token it must not)."""

    auth_token = "gAAAAAB-never-stored"

    def __init__(self, project_id, user_id, roles, project_domain_id=None,
                 user_domain_id=None):
        self.project_id = project_id
        self.user_id = user_id
        self.roles = roles
        self.project_domain_id = project_domain_id
        self.user_domain_id = user_domain_id

    def __repr__(self):
        return f"Context({vars(self)!r})"


REFUSED = object()


def new_uuid():
    return str(uuid.uuid4())


@pytest.fixture
def run(repository, count_statements, server, generated_cases):
    """run(call, bad): call(); when the oracle found bad fields, check it
    refused one of them with InvalidArgument and sent no statement, and
    return REFUSED; else return its result, or the role_stash error it
    raised. Counts the case."""
    def run_call(call, bad):
        generated_cases[server.param] += 1
        with count_statements() as sent:
            try:
                result = call()
            except exception.InvalidArgument as refused:
                assert refused.field in bad, (refused.field, bad)
                assert isinstance(refused.reason, str) and len(
                    refused.reason) > 8, refused.reason
                assert str(refused) == (
                    f"invalid {refused.field}: {refused.reason}")
                assert sent == [], sent
                return REFUSED
            except exception.RoleStashError as error:
                result = error
        assert not bad, f"accepted although {sorted(bad)} are bad"
        return result
    return run_call


def stored_uuids(repository):
    """{instance_uuid: number of role rows} of every stash row, live or not."""
    engine = repository.context_manager.writer.get_engine()
    with engine.connect() as connection:
        return dict(connection.execute(
            sa.select(api.STASHES.c.instance_uuid,
                      sa.func.count(api.ROLES.c.name))
            .select_from(api.STASHES.outerjoin(
                api.ROLES, api.ROLES.c.stash_id == api.STASHES.c.id))
            .group_by(api.STASHES.c.id, api.STASHES.c.instance_uuid)).all())


def make_stash(repository, roles=("member",), project_id="p-known"):
    return repository.stash_roles(new_uuid(), project_id=project_id,
                                  user_id="u", roles=list(roles))


# --- Writes ----------------------------------------------------------------

def test_stash_roles_keeps_what_it_takes_and_refuses_the_rest(
        repository, run):
    accepted = {}

    @given(args=arguments(
        {"spelling": VALID_SPELLINGS, "project_id": VALID_IDS,
         "user_id": VALID_IDS, "roles": VALID_ROLE_LISTS,
         "project_domain_id": st.one_of(st.none(), VALID_IDS),
         "user_domain_id": st.one_of(st.none(), VALID_IDS),
         "replace": st.booleans()},
        {"spelling": UUID_SPELLINGS, "project_id": NASTY, "user_id": NASTY,
         "roles": ROLE_LISTS, "project_domain_id": NASTY,
         "user_domain_id": NASTY, "replace": FLAGS}))
    @example(args=dict(spelling=str.upper, project_id="p", user_id="u",
                       roles=huge_role_list(5000), project_domain_id=None,
                       user_domain_id=None, replace=False))
    @example(args=dict(spelling=as_is, project_id="p", user_id="u",
                       roles=["NULL", '"', "{", "}", ",", "\\", "a b",
                              "\"NULL\"", "{NULL}", "'"],
                       project_domain_id=None, user_domain_id=None,
                       replace=True))
    def check(args):
        case(**args)

    def case(spelling, project_id, user_id, roles, project_domain_id,
             user_domain_id, replace):
        aim = new_uuid()
        instance = spelling(aim)
        bad = bad_role_list(roles)
        for field, ok in (
                ("instance_uuid", is_uuid(instance)),
                ("project_id", is_id(project_id)),
                ("user_id", is_id(user_id)),
                ("project_domain_id", project_domain_id is None
                 or is_id(project_domain_id)),
                ("user_domain_id", user_domain_id is None
                 or is_id(user_domain_id)),
                ("replace", is_flag(replace))):
            if not ok:
                bad.add(field)
        stashed = run(lambda: repository.stash_roles(
            instance, project_id=project_id, user_id=user_id, roles=roles,
            project_domain_id=project_domain_id,
            user_domain_id=user_domain_id, replace=replace), bad)
        if stashed is REFUSED:
            return
        wanted = api.Stash(aim, project_id, user_id,
                           tuple(dict.fromkeys(roles)), project_domain_id,
                           user_domain_id)
        assert stashed[:6] == wanted[:6]
        read = repository.get_stash(instance)
        assert read == stashed
        assert [type(name) for name in read.roles] == [str] * len(read.roles)
        accepted[aim] = len(wanted.roles)

    check()
    assert stored_uuids(repository) == accepted


def test_stash_from_context_reads_only_a_request_contexts_identity(
        repository, run):
    accepted = {}
    identities = arguments(
        {"project_id": VALID_IDS, "user_id": VALID_IDS,
         "roles": VALID_ROLE_LISTS,
         "project_domain_id": st.one_of(st.none(), VALID_IDS),
         "user_domain_id": st.one_of(st.none(), VALID_IDS)},
        {"project_id": NASTY, "user_id": NASTY, "roles": ROLE_LISTS,
         "project_domain_id": NASTY, "user_domain_id": NASTY})
    not_contexts = st.one_of(
        WRONG_TYPES, NASTY_TEXT, st.builds(
            dict, project_id=st.just("p"), user_id=st.just("u"),
            roles=st.just(["member"])))

    @given(args=arguments(
        {"context": identities.map(lambda identity: Context(**identity)),
         "spelling": VALID_SPELLINGS, "replace": st.booleans()},
        {"context": not_contexts, "spelling": UUID_SPELLINGS,
         "replace": FLAGS}))
    def check(args):
        case(**args)

    def case(context, spelling, replace):
        aim = new_uuid()
        instance = spelling(aim)
        if isinstance(context, Context):
            bad = bad_role_list(context.roles)
            for field in ("project_id", "user_id"):
                if not is_id(getattr(context, field)):
                    bad.add(field)
            for field in ("project_domain_id", "user_domain_id"):
                value = getattr(context, field)
                if not (value is None or is_id(value)):
                    bad.add(field)
        else:
            bad = {"context"}
        if not is_uuid(instance):
            bad.add("instance_uuid")
        if not is_flag(replace):
            bad.add("replace")
        stashed = run(lambda: repository.stash_from_context(
            context, instance, replace=replace), bad)
        if stashed is REFUSED:
            return
        assert stashed == repository.get_stash(aim)
        assert stashed.roles == tuple(dict.fromkeys(context.roles))
        assert (stashed.project_id, stashed.user_id) == (
            context.project_id, context.user_id)
        assert Context.auth_token not in repr(stashed)
        accepted[aim] = len(stashed.roles)

    check()
    assert stored_uuids(repository) == accepted


def test_delete_stash_soft_deletes_only_a_named_live_stash(repository, run):
    accepted = {}

    @given(args=arguments(
        {"spelling": VALID_SPELLINGS, "missing_ok": st.booleans()},
        {"spelling": UUID_SPELLINGS, "missing_ok": FLAGS}),
        existing=st.booleans())
    def check(args, existing):
        case(existing=existing, **args)

    def case(spelling, existing, missing_ok):
        aim = make_stash(repository).instance_uuid if existing else new_uuid()
        if existing:
            accepted[aim] = 1
        instance = spelling(aim)
        bad = set()
        if not is_uuid(instance):
            bad.add("instance_uuid")
        if not is_flag(missing_ok):
            bad.add("missing_ok")
        deleted = run(lambda: repository.delete_stash(
            instance, missing_ok=missing_ok), bad)
        if deleted is REFUSED:
            if existing:
                assert repository.get_stash(aim).instance_uuid == aim
            return
        if existing:
            assert deleted is True
            with pytest.raises(exception.StashNotFound):
                repository.get_stash(aim)
        elif missing_ok:
            assert deleted is False
        else:
            assert isinstance(deleted, exception.StashNotFound)
            assert deleted.instance_uuid == aim

    check()
    assert stored_uuids(repository) == accepted


OLDER_THAN = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=st.builds(datetime.timezone, st.timedeltas(
        min_value=datetime.timedelta(hours=-23, minutes=-59),
        max_value=datetime.timedelta(hours=23, minutes=59)))),
    st.sampled_from([datetime.datetime.min, datetime.datetime.max,
                     datetime.datetime.min.replace(tzinfo=datetime.timezone(
                         datetime.timedelta(hours=1))),
                     datetime.datetime.max.replace(tzinfo=datetime.timezone(
                         datetime.timedelta(hours=-1)))]),
    st.dates(), st.just("2020-01-01"), st.integers(), st.floats(), st.none())
OLDER_THAN_VALID = st.one_of(
    st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                 max_value=datetime.datetime(2100, 1, 1)),
    st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                 max_value=datetime.datetime(2100, 1, 1),
                 timezones=st.sampled_from([datetime.timezone.utc,
                                            datetime.timezone(
                                                datetime.timedelta(
                                                    hours=-11))])))
BATCHES = st.one_of(st.integers(-3, MAX_BATCH + 3), st.sampled_from(
    [MAX_BATCH, MAX_BATCH + 1, 1, 0, True, 2.0, "5", None]), WRONG_TYPES)


def test_purge_deleted_removes_only_stashes_deleted_before_the_cutoff(
        repository, run):
    live = make_stash(repository)
    engine = repository.context_manager.writer.get_engine()

    def deleted_before(cutoff):
        with engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).where(
                api.STASHES.c.deleted != 0,
                api.STASHES.c.deleted_at < cutoff))

    @given(args=arguments(
        {"before": OLDER_THAN_VALID,
         "batch_size": st.integers(1, MAX_BATCH)},
        {"before": OLDER_THAN, "batch_size": BATCHES}),
        delete_one=st.integers(0, 3).map(lambda roll: roll == 0))
    def check(args, delete_one):
        case(delete_one=delete_one, **args)

    def case(before, batch_size, delete_one):
        if delete_one:
            repository.delete_stash(make_stash(repository).instance_uuid)
        bad = set()
        cutoff = in_utc(before)
        if cutoff is None:
            bad.add("before")
        if not is_count(batch_size, MAX_BATCH):
            bad.add("batch_size")
        purged = run(lambda: repository.purge_deleted(
            before=before, batch_size=batch_size), bad)
        if purged is REFUSED:
            return
        assert purged.complete and purged.rows["role_stashes"] >= 0
        assert deleted_before(cutoff) == 0
        assert repository.list_stashes() == [live]

    check()


# --- Reads -----------------------------------------------------------------

def test_get_stash_reads_a_live_stash_by_any_case_of_its_uuid(
        repository, run):
    known = make_stash(repository, roles=["member", "Member", "r\u00f4le"])

    @given(args=arguments(
        {"spelling": VALID_SPELLINGS, "expected_project_id": st.one_of(
            st.none(), st.just("p-known"), VALID_IDS)},
        {"spelling": UUID_SPELLINGS, "expected_project_id": NASTY}),
        aim_known=st.booleans())
    def check(args, aim_known):
        case(aim_known=aim_known, **args)

    def case(spelling, aim_known, expected_project_id):
        aim = known.instance_uuid if aim_known else new_uuid()
        instance = spelling(aim)
        bad = set()
        if not is_uuid(instance):
            bad.add("instance_uuid")
        if not (expected_project_id is None or is_id(expected_project_id)):
            bad.add("expected_project_id")
        found = run(lambda: repository.get_stash(
            instance, expected_project_id=expected_project_id), bad)
        if found is REFUSED:
            return
        if aim_known and expected_project_id in (None, known.project_id):
            assert found == known
        else:
            assert isinstance(found, exception.StashNotFound)
            assert found.instance_uuid == aim

    check()


UUID_CONTAINERS = st.sampled_from([list, tuple, set, frozenset, dict.fromkeys])
NOT_A_COLLECTION = st.one_of(
    st.none(), st.integers(), st.text(max_size=40), st.binary(max_size=40),
    st.just(iter(())), st.just(object()))


def test_get_stashes_reads_live_stashes_of_up_to_a_thousand_uuids(
        repository, run):
    known = [make_stash(repository, roles=roles)
             for roles in (["member"], [], ["Admin", "admin"])]
    repository.delete_stash(known[1].instance_uuid)
    live = {stash.instance_uuid: stash for stash in (known[0], known[2])}

    item_spellings = mostly(VALID_SPELLINGS, UUID_SPELLINGS)

    @given(items=st.lists(st.tuples(item_spellings,
                                    st.sampled_from([0, 1, 2, None])),
                          max_size=8),
           container=UUID_CONTAINERS,
           padding=mostly(st.just(0), st.sampled_from([994, 1001])),
           not_a_collection=mostly(st.none(), NOT_A_COLLECTION))
    @example(items=[], container=list, padding=MAX_BULK,
             not_a_collection=None)
    @example(items=[(as_is, 0)], container=list, padding=MAX_BULK,
             not_a_collection=None)
    def check(items, container, padding, not_a_collection):
        values = [spelling(known[aim].instance_uuid if aim is not None
                           else new_uuid()) for spelling, aim in items]
        values += [new_uuid() for _ in range(padding)]
        if not_a_collection is not None:
            argument = not_a_collection
        else:
            try:
                argument = container(values)
            except TypeError:  # unhashable items in a set
                argument = list(values)
        bad = set()
        if (isinstance(argument, (str, bytes))
                or not isinstance(argument, collections.abc.Collection)
                or len(argument) > MAX_BULK):
            bad.add("instance_uuids")
        else:
            bad |= {f"instance_uuids[{index}]"
                    for index, value in enumerate(argument)
                    if not is_uuid(value)}
        found = run(lambda: repository.get_stashes(argument), bad)
        if found is REFUSED:
            return
        asked = {value.lower() for value in argument}
        assert found == {key: stash for key, stash in live.items()
                         if key in asked}

    check()


def test_list_stashes_pages_by_project_and_exact_role(repository, run):
    fleet = [make_stash(repository, roles=roles, project_id=project)
             for project, roles in (
                 ("p-a", ["admin"]), ("p-b", ["Admin"]),
                 ("p-a", ["caf\u00e9", "member "]),
                 ("p-a", ["cafe\u0301", "member"]), ("p-b", []),
                 ("P-A", ["stra\u00dfe", "\u0131"]))]
    repository.delete_stash(fleet[4].instance_uuid)
    live = [stash for stash in fleet if stash is not fleet[4]]
    aims = st.sampled_from([0, 2, 4, 5, None])

    @given(args=arguments(
        {"project_id": st.one_of(st.none(), st.sampled_from(
            ["p-a", "P-A", "p-b", "p-c"]), VALID_IDS),
         "role": st.one_of(st.none(), TWINS, st.sampled_from(
             ["caf\u00e9", "cafe\u0301", "member ", "stra\u00dfe"]),
             VALID_ROLE_NAMES),
         "marker": st.one_of(st.none(), st.tuples(VALID_SPELLINGS, aims)),
         "limit": st.one_of(st.none(), st.integers(1, 8), st.sampled_from(
             [MAX_LIMIT, MAX_LIMIT + 1, 10**12]))},
        {"project_id": NASTY, "role": ROLE_NAMES,
         "marker": st.one_of(st.tuples(UUID_SPELLINGS, aims), NASTY),
         "limit": st.one_of(st.integers(-2, 0), st.sampled_from(
             [True, False, 2.0, "3"]), WRONG_TYPES)}))
    def check(args):
        case(**args)

    def case(project_id, role, marker, limit):
        if isinstance(marker, tuple):
            spelling, aim = marker
            marker = spelling(fleet[aim].instance_uuid if aim is not None
                              else new_uuid())
        bad = set()
        if not (project_id is None or is_id(project_id)):
            bad.add("project_id")
        if not (role is None or is_role_name(role)):
            bad.add("role")
        if not (marker is None or is_uuid(marker)):
            bad.add("marker")
        if not (limit is None or is_count(limit, float("inf"))):
            bad.add("limit")
        page = run(lambda: repository.list_stashes(
            project_id=project_id, role=role, marker=marker, limit=limit),
            bad)
        if page is REFUSED:
            return
        matching = [stash for stash in live
                    if project_id in (None, stash.project_id)
                    and (role is None or role in stash.roles)]
        if marker is not None:
            after = [stash.instance_uuid for stash in live].index(
                marker.lower()) if marker.lower() in (
                    stash.instance_uuid for stash in live) else None
            if after is None:
                assert isinstance(page, exception.MarkerNotFound)
                return
            matching = [stash for stash in matching
                        if live.index(stash) > after]
        assert page == matching[:min(limit or MAX_LIMIT, MAX_LIMIT)]

    check()


def test_get_stash_and_replies_and_get_replies_read_an_instances_cache(
        repository, run):
    now = datetime.datetime(2026, 11, 27, 12, 0, 0, 123456)
    freshness = http_cache.Freshness(now + datetime.timedelta(minutes=1),
                                     None, '"v1"', None)
    known = make_stash(repository, roles=["member", "reader"])
    orphan = new_uuid()  # replies of an instance with no stash
    for instance in (known.instance_uuid, orphan):
        repository.store_reply(instance, "target", '{"a": 1}', freshness,
                               now=now)
    reply = api.CachedReply("target", '{"a": 1}', '"v1"', None, now,
                            freshness.fresh_until, None)

    @given(spelling=UUID_SPELLINGS, aim=st.sampled_from(["known", "orphan",
                                                         "new"]),
           with_stash=st.booleans())
    def check(spelling, aim, with_stash):
        aimed = {"known": known.instance_uuid, "orphan": orphan}.get(
            aim) or new_uuid()
        instance = spelling(aimed)
        bad = set() if is_uuid(instance) else {"instance_uuid"}
        if with_stash:
            found = run(lambda: repository.get_stash_and_replies(instance),
                        bad)
            if found is REFUSED:
                return
            if aim == "known":
                assert found == (known, {"target": reply})
            else:
                assert isinstance(found, exception.StashNotFound)
                assert found.instance_uuid == aimed
        else:
            found = run(lambda: repository.get_replies(instance), bad)
            if found is REFUSED:
                return
            assert found == ({} if aim == "new" else {"target": reply})

    check()


NAIVE_TIMES = st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                           max_value=datetime.datetime(9999, 12, 30))
BODIES = st.one_of(
    st.just('{"a": 1}'), st.text(max_size=40), with_inside(UNSEEN_CHARACTERS),
    with_inside(SURROGATES), SQL_LIKE, st.sampled_from(
        [1_000_000, MAX_BODY_BYTES, MAX_BODY_BYTES + 1]).map(
            lambda size: "x" * size),
    st.just("\u00e9" * 600_000), WRONG_TYPES)
VALIDATORS = st.one_of(st.none(), st.sampled_from(
    ['"v1"', 'W/"v2"', "Fri, 27 Nov 2026 12:00:00 GMT"]), NASTY)
FRESHNESSES = st.one_of(
    st.none(),
    st.builds(http_cache.Freshness, st.one_of(st.none(), NAIVE_TIMES),
              st.one_of(st.none(), NAIVE_TIMES), VALIDATORS, VALIDATORS),
    st.builds(http_cache.Freshness, NAIVE_TIMES, st.none(), st.none(),
              st.none()),
    st.builds(http_cache.Freshness, WRONG_TYPES, st.none(), st.none(),
              st.none()),
    WRONG_TYPES)
NOWS = st.one_of(st.none(), NAIVE_TIMES, st.sampled_from(
    [datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
     datetime.date(2026, 1, 1), "2026-01-01", 0]))


def bad_freshness(freshness):
    """The fields of a freshness that break its rules: a Freshness (or
    None), its times naive UTC datetimes or None, its validators ids (a
    Last-Modified at most 64 characters), and a lifetime or a validator."""
    if freshness is None:
        return set()
    if not isinstance(freshness, http_cache.Freshness):
        return {"freshness"}
    bad = {f"freshness.{field}" for field in ("fresh_until", "stale_until")
           if getattr(freshness, field) is not None
           and not isinstance(getattr(freshness, field), datetime.datetime)}
    if not (freshness.etag is None or is_id(freshness.etag)):
        bad.add("freshness.etag")
    if not (freshness.last_modified is None
            or is_id(freshness.last_modified, 64)):
        bad.add("freshness.last_modified")
    if not bad and not (freshness.fresh_until or freshness.stale_until
                        or freshness.etag or freshness.last_modified):
        bad.add("freshness")
    return bad


def test_store_reply_keeps_a_reply_exactly_or_refuses_it(repository, run):
    accepted = {}

    @given(args=arguments(
        {"spelling": VALID_SPELLINGS, "target": VALID_IDS,
         "body": st.one_of(st.just('{"a": 1}'), st.text(
             st.characters(codec="utf-8", exclude_characters="\x00"),
             max_size=40), SQL_LIKE),
         "freshness": st.one_of(st.none(), st.builds(
             http_cache.Freshness, NAIVE_TIMES, st.one_of(st.none(),
                                                          NAIVE_TIMES),
             st.one_of(st.none(), VALID_IDS), st.one_of(st.none(), st.just(
                 "Fri, 27 Nov 2026 12:00:00 GMT"), st.text(
                     SHOWN_CHARACTERS, min_size=1, max_size=64)))),
         "now": st.one_of(st.none(), NAIVE_TIMES)},
        {"spelling": UUID_SPELLINGS, "target": NASTY, "body": BODIES,
         "freshness": FRESHNESSES, "now": NOWS}))
    def check(args):
        case(**args)

    def case(spelling, target, body, freshness, now):
        aim = new_uuid()
        instance = spelling(aim)
        bad = bad_freshness(freshness)
        if not is_uuid(instance):
            bad.add("instance_uuid")
        if not is_id(target):
            bad.add("target")
        if not storable_body(body):
            bad.add("body")
        if not (now is None or in_utc(now) is not None):
            bad.add("now")
        stored = run(lambda: repository.store_reply(
            instance, target, body, freshness, now=now), bad)
        if stored is REFUSED:
            assert repository.get_replies(aim) == {}
            return
        replies = repository.get_replies(aim)
        if freshness is None:
            assert stored is False and replies == {}
            return
        assert stored is True
        [(key, reply)] = replies.items()
        assert key == target
        assert (reply.body, reply.etag, reply.last_modified,
                reply.fresh_until, reply.stale_until) == (
            body, freshness.etag, freshness.last_modified,
            freshness.fresh_until, freshness.stale_until)
        if now is not None:
            assert reply.stored_at == in_utc(now)
        accepted[aim] = reply

    check()
    engine = repository.context_manager.writer.get_engine()
    with engine.connect() as connection:
        assert sorted(connection.execute(sa.select(
            models.REPLIES.c.instance_uuid)).scalars()) == sorted(accepted)


# --- role-stash-manage -------------------------------------------------------

def manage(url, *arguments):
    """Run role-stash-manage in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = role_stash_manage.main(["--database-url", url, *arguments])
        except SystemExit as usage:  # argparse's own refusal
            code = usage.code
    return code, out.getvalue(), err.getvalue()


def options(**values):
    """--name=value for each value given (=: a value may start with -)."""
    return [f"--{name.replace('_', '-')}={value}"
            for name, value in values.items() if value is not None]


# What argv can carry: strings, lone surrogates included (undecodable
# bytes arrive as surrogateescape), NUL only in-process.
ARGUMENT_TEXT = st.one_of(
    st.sampled_from(["p-1", "u-1", "member", "Admin", "-x", "--json"]),
    NASTY_TEXT.filter(lambda text: len(text) < 10_000))
ARGUMENT_SPELLINGS = st.one_of(
    st.just(as_is), st.just(str.upper),
    st.builds(functools.partial, st.just(replaced), st.integers(0, 35),
              st.sampled_from("g-\x00 \udc80")),
    st.builds(functools.partial, st.just(given_value), ARGUMENT_TEXT))
INTEGER_TEXT = st.one_of(st.integers(-3, 10**5).map(str), st.sampled_from(
    ["", " 5", "1e3", "2.0", "0x10", "\uff15", "\u0663", "five", "-0"]))
VALID_DATE_TEXT = st.one_of(
    st.dates(min_value=datetime.date(1970, 1, 1),
             max_value=datetime.date(2100, 1, 1)).map(str),
    st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                 max_value=datetime.datetime(2100, 1, 1)).map(
        lambda moment: moment.isoformat(" ")))
BAD_DATE_TEXT = ["", "nan", "tomorrow", "one", "2026-13-01", "2026-02-30",
                 "01/02/2026", "36500"]


def bad_integer_text(text, flag, most):
    """The fields an --option=text taking an integer breaks: argparse's
    int() parse (the flag), then the repository's range (field)."""
    try:
        value = int(text)
    except ValueError:
        return {flag}
    return set() if is_count(value, most) else {flag.lstrip("-").replace(
        "-", "_")}


@settings(max_examples=max(settings.default.max_examples // 5, 1))
@given(args=arguments(
    {"spelling": VALID_SPELLINGS, "project_id": VALID_IDS,
     "user_id": VALID_IDS, "roles": st.lists(VALID_ROLE_NAMES, max_size=4),
     "project_domain_id": st.one_of(st.none(), VALID_IDS)},
    {"spelling": ARGUMENT_SPELLINGS, "project_id": ARGUMENT_TEXT,
     "user_id": ARGUMENT_TEXT, "roles": st.lists(ARGUMENT_TEXT, max_size=4),
     "project_domain_id": ARGUMENT_TEXT}), replace=st.booleans())
def _stash_command_cases(url, run_case, args, replace):
    _stash_command_case(url, run_case, replace=replace, **args)


def _stash_command_case(url, run_case, spelling, project_id, user_id, roles,
                        project_domain_id, replace):
    aim = new_uuid()
    instance = spelling(aim)
    bad = bad_role_list(roles)
    for field, ok in (("instance_uuid", is_uuid(instance)),
                      ("project_id", is_id(project_id)),
                      ("user_id", is_id(user_id)),
                      ("project_domain_id", project_domain_id is None
                       or is_id(project_domain_id))):
        if not ok:
            bad.add(field)
    arguments = ["stash", *options(project_id=project_id, user_id=user_id,
                                   project_domain_id=project_domain_id),
                 *[f"--role={role}" for role in roles],
                 *(["--replace"] if replace else []), "--json", "--",
                 instance]
    code, out, err = run_case(lambda: manage(url, *arguments), bad)
    if bad:
        return
    stashed = json.loads(out)
    assert (stashed["instance_uuid"], stashed["project_id"],
            stashed["user_id"], stashed["roles"],
            stashed["project_domain_id"]) == (
        aim, project_id, user_id, list(dict.fromkeys(roles)),
        project_domain_id)
    code, out, err = manage(url, "show", "--json", "--", instance)
    assert (code, json.loads(out)) == (role_stash_manage.OK, stashed), err


@pytest.fixture
def run_command(server, generated_cases, count_statements):
    """run_command(call, bad): call() gives role-stash-manage's (exit code,
    stdout, stderr); when the oracle found bad fields, it must exit 2
    naming one of them on stderr, no traceback, no statement of the
    repository's sent; else exit 0, or 3 for a stash not found."""
    def run_call(call, bad):
        generated_cases[server.param] += 1
        with count_statements() as sent:
            code, out, err = call()
        assert "Traceback" not in err
        if bad:
            assert code == role_stash_manage.BAD_INPUT, (code, out, err)
            assert any(field in err for field in bad), (bad, err)
            assert not [statement for statement in sent
                        if "role_stash" in statement], sent
        else:
            assert code in (role_stash_manage.OK,
                            role_stash_manage.NOT_FOUND), (code, out, err)
        return code, out, err
    return run_call


def test_the_stash_command_keeps_what_it_takes_and_refuses_the_rest(
        migrated_url, repository, run_command):
    _stash_command_cases(migrated_url, run_command)


COMMANDS = st.one_of(
    st.tuples(st.just("show"), mostly(VALID_SPELLINGS, ARGUMENT_SPELLINGS),
              st.booleans(), st.booleans()),
    st.tuples(st.just("delete"), mostly(VALID_SPELLINGS, ARGUMENT_SPELLINGS),
              st.booleans()),
    st.tuples(st.just("list"),
              mostly(st.one_of(st.none(), VALID_IDS), ARGUMENT_TEXT),
              mostly(st.one_of(st.none(), TWINS, VALID_ROLE_NAMES),
                     ARGUMENT_TEXT),
              mostly(st.one_of(st.none(), VALID_SPELLINGS),
                     ARGUMENT_SPELLINGS),
              mostly(st.one_of(st.none(), st.integers(1, 2000).map(str)),
                     INTEGER_TEXT)),
    st.tuples(st.just("purge"),
              mostly(st.one_of(st.none(), VALID_DATE_TEXT),
                     st.sampled_from(BAD_DATE_TEXT)),
              mostly(st.one_of(st.none(), st.integers(1, MAX_BATCH).map(
                  str)), INTEGER_TEXT)),
)


def test_show_list_delete_and_purge_commands_answer_as_the_repository(
        migrated_url, repository, run_command):
    known = make_stash(repository, roles=["member", "Admin", "a,b"])

    @settings(max_examples=max(settings.default.max_examples // 5, 1))
    @given(command=COMMANDS)
    def check(command):
        name, *values = command
        bad = set()
        if name in ("show", "delete"):
            spelling, aim_known, *vendordata = values
            aim = (known.instance_uuid if name == "show"
                   else make_stash(repository).instance_uuid) if aim_known \
                else new_uuid()
            instance = spelling(aim)
            if not is_uuid(instance):
                bad.add("instance_uuid")
            arguments = [name, *(["--vendordata"] if vendordata and
                                 vendordata[0] else []), "--json", "--",
                         instance]
        elif name == "list":
            project_id, role, marker_spelling, limit = values
            marker = (marker_spelling(known.instance_uuid)
                      if marker_spelling is not None else None)
            for field, ok in (
                    ("project_id", project_id is None or is_id(project_id)),
                    ("role", role is None or is_role_name(role)),
                    ("marker", marker is None or is_uuid(marker))):
                if not ok:
                    bad.add(field)
            if limit is not None:
                bad |= bad_integer_text(limit, "--limit", float("inf"))
            arguments = ["list", *options(project_id=project_id, role=role,
                                          marker=marker, limit=limit),
                         "--json"]
        else:
            before, batch_size = values
            if before in BAD_DATE_TEXT:
                bad.add("--before")
            if batch_size is not None:
                # argparse refuses what is no positive integer, naming
                # the option; the repository what is past its bound.
                bad |= bad_integer_text(batch_size, "--batch-size",
                                        MAX_BATCH)
                if bad & {"batch_size"} and int(batch_size) < 1:
                    bad = bad - {"batch_size"} | {"--batch-size"}
            arguments = ["purge", *options(before=before,
                                           batch_size=batch_size),
                         *([] if before is not None else ["--all"]),
                         "--json"]
        code, out, err = run_command(
            lambda: manage(migrated_url, *arguments), bad)
        if bad:
            return
        answer = json.loads(out) if code == role_stash_manage.OK else None
        if name == "show":
            expected = (known.vendordata() if values[2]
                        else stash_commands.stash_payload(known))
            assert answer == (expected if aim_known else None), err
        elif name == "delete":
            assert answer == ({"deleted": instance} if aim_known else None)
        elif name == "list":
            assert answer == [stash_commands.stash_payload(stash) for stash in
                              repository.list_stashes(
                                  project_id=project_id, role=role,
                                  marker=marker,
                                  limit=None if limit is None
                                  else int(limit))]
        else:
            assert code == role_stash_manage.OK and answer["total"] >= 0
        assert repository.get_stash(known.instance_uuid) == known

    check()


BAD_DATABASE_URLS = {
    "empty": "", "blank": " ", "no scheme": "garbage",
    "port not a number": "postgresql+psycopg2://nova:s3cret@db:port/nova",
    "unclosed bracket": "mysql+pymysql://nova:s3cret@[::1/nova",
    "unknown dialect": "nosuch://nova:s3cret@db/nova",
    "unknown driver": "postgresql+nosuch://nova:s3cret@db/nova",
    "NUL in the path": "sqlite:////tmp/role\x00stash.sqlite",
}


@pytest.mark.parametrize("label", sorted(BAD_DATABASE_URLS))
def test_a_url_that_is_no_database_url_exits_2_and_repeats_no_password(
        label, tmp_path):
    """These raised Python's ValueError before (a port, a bracket, a NUL),
    or ("", " ") silently used the SQLite file of the working folder."""
    url = BAD_DATABASE_URLS[label]
    config = tmp_path / "role_stash.conf"
    config.write_text(f"[database]\nconnection = {url}\n")
    for arguments in (["--database-url", url], ["--config-file",
                                                 str(config)]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = role_stash_manage.main([*arguments, "db", "version"])
        assert code == role_stash_manage.BAD_INPUT, (arguments, out.getvalue())
        assert "database" in err.getvalue()
        assert "s3cret" not in err.getvalue() + out.getvalue()
    assert list(tmp_path.iterdir()) == [config]
    with pytest.raises(exception.InvalidArgument, match="database"):
        api.StashRepository.from_url(url).get_stash(new_uuid())
