"""Bad input: a clear InvalidArgument naming the field, before any SQL."""

import datetime

import pytest

from role_stash import exception
from tests.helpers import INSTANCE

GOOD = {"project_id": "p-1", "user_id": "u-1", "roles": ["member"]}

BAD_STASHES = [
    ({"instance_uuid": None}, "instance_uuid"),
    ({"instance_uuid": 42}, "instance_uuid"),
    ({"instance_uuid": ""}, "instance_uuid"),
    ({"instance_uuid": "not-a-uuid"}, "instance_uuid"),
    ({"instance_uuid": INSTANCE[:-1]}, "instance_uuid"),
    ({"instance_uuid": INSTANCE + "0"}, "instance_uuid"),
    ({"instance_uuid": INSTANCE.replace("-", "")}, "instance_uuid"),
    ({"instance_uuid": "{" + INSTANCE + "}"}, "instance_uuid"),
    ({"instance_uuid": INSTANCE[:-1] + "g"}, "instance_uuid"),
    ({"instance_uuid": INSTANCE + "\x00"}, "instance_uuid"),
    ({"instance_uuid": INSTANCE.encode()}, "instance_uuid"),
    ({"project_id": ""}, "project_id"),
    ({"project_id": None}, "project_id"),
    ({"project_id": 7}, "project_id"),
    ({"project_id": "p" * 256}, "project_id"),
    ({"project_id": "p\x00"}, "project_id"),
    ({"project_id": " p"}, "project_id"),
    ({"user_id": ""}, "user_id"),
    ({"user_id": b"u"}, "user_id"),
    ({"user_id": "u\n1"}, "user_id"),
    ({"project_domain_id": ""}, "project_domain_id"),
    ({"user_domain_id": "d" * 256}, "user_domain_id"),
    ({"roles": "member"}, "roles"),
    ({"roles": None}, "roles"),
    ({"roles": {"member"}}, "roles"),
    ({"roles": [""]}, "roles[0]"),
    ({"roles": ["member", None]}, "roles[1]"),
    ({"roles": ["member", 3]}, "roles[1]"),
    ({"roles": ["r" * 256]}, "roles[0]"),
    ({"roles": ["mem\x00ber"]}, "roles[0]"),
    ({"roles": ["surrogate\ud800"]}, "roles[0]"),
    ({"roles": [" "]}, "roles[0]"),
    ({"roles": ["\t\n\xa0\u2028"]}, "roles[0]"),
    ({"replace": "yes"}, "replace"),
]


@pytest.mark.parametrize("change, field", BAD_STASHES,
                         ids=[str(index) for index in range(len(BAD_STASHES))])
def test_bad_stash_argument_is_refused_before_any_sql(
        repository, count_statements, change, field):
    arguments = {"instance_uuid": INSTANCE, **GOOD, **change}
    with count_statements() as statements:
        with pytest.raises(exception.InvalidArgument) as raised:
            repository.stash_roles(arguments.pop("instance_uuid"), **arguments)
    assert raised.value.field == field
    assert str(raised.value) == f"invalid {field}: {raised.value.reason}"
    assert isinstance(raised.value.reason, str) and raised.value.reason
    [value] = change.values()
    if not isinstance(value, (str, list, tuple, set)):
        assert raised.value.reason.endswith(f"got {type(value).__name__}")
    assert statements == []
    assert repository.list_stashes() == []


def test_a_caller_catching_value_error_or_the_base_error_catches_it(
        repository):
    """Code written for ValueError (Nova's API layer) and code written for
    role_stash's base error both see a refused argument."""
    with pytest.raises(ValueError, match="instance_uuid"):
        repository.get_stash("nope")
    try:
        repository.stash_roles(INSTANCE, project_id="", user_id="u",
                               roles=[])
    except exception.RoleStashError as error:
        assert error.field == "project_id"
    else:
        pytest.fail("an empty project_id was accepted")


BAD_READS = [
    ("get_stash", ("nope",), {}, "instance_uuid"),
    ("get_stash", (None,), {}, "instance_uuid"),
    ("get_stashes", (INSTANCE,), {}, "instance_uuids"),
    ("get_stashes", (None,), {}, "instance_uuids"),
    ("get_stashes", ([INSTANCE, "x"],), {}, "instance_uuids[1]"),
    ("get_stashes", ([INSTANCE, 7, "x"],), {}, "instance_uuids[1]"),
    ("get_stashes", ([INSTANCE.encode()],), {}, "instance_uuids[0]"),
    ("get_stashes", ([INSTANCE, INSTANCE + "\0"],), {}, "instance_uuids[1]"),
    ("get_stashes", ([INSTANCE] * 1001,), {}, "instance_uuids"),
    ("list_stashes", (), {"limit": 0}, "limit"),
    ("list_stashes", (), {"limit": -1}, "limit"),
    ("list_stashes", (), {"limit": "10"}, "limit"),
    ("list_stashes", (), {"limit": True}, "limit"),
    ("list_stashes", (), {"marker": "x"}, "marker"),
    ("list_stashes", (), {"project_id": ""}, "project_id"),
    ("list_stashes", (), {"role": "r" * 256}, "role"),
    ("list_stashes", (), {"role": "a\x00"}, "role"),
    ("delete_stash", ("x",), {}, "instance_uuid"),
    ("purge_deleted", (), {"before": "2020-01-01"}, "before"),
    ("purge_deleted", (), {}, "before"),
    ("purge_deleted", (), {"before": datetime.datetime(2020, 1, 1),
                           "everything": True}, "before"),
    ("purge_deleted", (), {"everything": "yes"}, "everything"),
    ("purge_deleted", (), {"before": datetime.datetime(2020, 1, 1),
                           "batch_size": 0}, "batch_size"),
    ("purge_deleted", (), {"before": datetime.datetime(2020, 1, 1),
                           "batch_size": 10001}, "batch_size"),
    # Python's OverflowError before: no UTC time is a day before year 1.
    ("purge_deleted", (), {"before": datetime.datetime.min.replace(
        tzinfo=datetime.timezone(datetime.timedelta(hours=1)))},
     "before"),
    ("purge_deleted", (), {"before": datetime.datetime.max.replace(
        tzinfo=datetime.timezone(datetime.timedelta(hours=-1)))},
     "before"),
    # Python's AttributeError before: not a request context.
    ("stash_from_context", (None, INSTANCE), {}, "context"),
    ("stash_from_context", ({"project_id": "p", "user_id": "u",
                             "roles": []}, INSTANCE), {}, "context"),
    ("purge_deleted", (), {"everything": True, "max_rows": 0}, "max_rows"),
    ("archive_deleted", (), {"before": 20200101}, "before"),
    ("archive_deleted", (), {"max_rows": -1}, "max_rows"),
    ("archive_deleted", (), {"max_rows": True}, "max_rows"),
    ("archive_deleted", (), {"batch_size": 10001}, "batch_size"),
    ("archive_deleted", (), {"until_complete": 1}, "until_complete"),
    ("archive_deleted", (), {"dry_run": "no"}, "dry_run"),
    ("archive_deleted", (), {"progress": 5}, "progress"),
]


@pytest.mark.parametrize("method, args, kwargs, field", BAD_READS,
                         ids=[f"{row[0]}-{index}"
                              for index, row in enumerate(BAD_READS)])
def test_bad_argument_of_other_calls_is_refused_before_any_sql(
        repository, count_statements, method, args, kwargs, field):
    with count_statements() as statements:
        with pytest.raises(exception.InvalidArgument) as raised:
            getattr(repository, method)(*args, **kwargs)
    assert raised.value.field == field
    assert isinstance(raised.value.reason, str) and raised.value.reason
    assert statements == []


def test_a_refused_uuid_is_not_repeated_whole(repository):
    secret = "gAAAAAB" + "x" * 200
    with pytest.raises(exception.InvalidArgument) as raised:
        repository.get_stash(secret)
    assert secret not in str(raised.value)


WRONG_TYPES_NAMED = [
    ("get_stashes", (42,), {}, "int"),
    ("list_stashes", (), {"limit": 2.5}, "float"),
    ("purge_deleted", (), {"before": "2020-01-01"}, "str"),
    ("archive_deleted", (), {"max_rows": 2.5}, "float"),
    ("stash_from_context", (None, INSTANCE), {}, "NoneType"),
    ("store_reply", (INSTANCE, "t", b"{}", None), {}, "bytes"),
    ("store_reply", (INSTANCE, "t", "{}", "max-age=60"), {}, "str"),
]


@pytest.mark.parametrize("method, args, kwargs, type_name",
                         WRONG_TYPES_NAMED,
                         ids=[row[0] + row[3] for row in WRONG_TYPES_NAMED])
def test_a_refused_type_is_named_in_the_reason(
        repository, method, args, kwargs, type_name):
    with pytest.raises(exception.InvalidArgument) as raised:
        getattr(repository, method)(*args, **kwargs)
    assert raised.value.reason.endswith(f"got {type_name}")
