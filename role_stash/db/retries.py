"""Retries of the calls a repository makes alone, on oslo.db's DB API retry.

A lone call is retried on deadlock, lost connection and a few more passing
faults, as [database] db_max_retries and db_retry_interval say where the
operator set them, else DEFAULT_RETRIES. A call inside the caller's
transaction is never retried here: the caller owns that transaction.
"""

from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
import sqlalchemy as sa

from role_stash.db import errors

# [database] options of the retries of a call (oslo.db's DB API retries):
# followed where the operator set them, else DEFAULT_RETRIES.
RETRY_OPTIONS = ("db_max_retries", "db_retry_interval",
                 "db_inc_retry_interval", "db_max_retry_interval")

# Retries of a call made alone, where [database] says nothing: long
# enough to ride out a database restart or a failover, short enough that
# a guest's metadata GET still answers within cloud-init's request
# timeout; oslo.db's own twenty tries up to ten seconds apart would hold
# a worker for minutes. The first tries come quickly, for a dropped
# connection or a deadlock.
DEFAULT_RETRIES = {"max_retries": 10, "retry_interval": 0.05,
                   "inc_retry_interval": True, "max_retry_interval": 1.0}


def retry_policy(settings):
    """Return a decorator retrying a lone call on deadlock, lost connection
    and a few more passing faults (see _worth_a_retry), as [database]
    db_max_retries and db_retry_interval say, else DEFAULT_RETRIES."""
    policy = dict(DEFAULT_RETRIES)
    for option, key in (("db_max_retries", "max_retries"),
                        ("db_retry_interval", "retry_interval"),
                        ("db_inc_retry_interval", "inc_retry_interval"),
                        ("db_max_retry_interval", "max_retry_interval")):
        if settings.get(option) is not None:
            policy[key] = settings[option]
    return oslo_db_api.wrap_db_retry(
        retry_on_disconnect=True, retry_on_deadlock=True,
        exception_checker=_worth_a_retry, **policy)


def _worth_a_retry(error):
    """Besides deadlock and disconnect: a serialization failure, a connect
    that failed in a way oslo.db does not recognize (libpq's "connection
    to server ... failed", which psycopg2 and psycopg raise while the
    server restarts), and SQLite's lock, taken by another writer; error
    may be oslo.db's DBError around SQLAlchemy's. Never a database that
    does not exist: no retry makes it."""
    if isinstance(error, db_exc.DBNonExistentDatabase):
        return False
    error = getattr(error, "inner_exception", None) or error
    if not isinstance(error, sa.exc.OperationalError):
        return False
    return (error.statement is None or errors.is_serialization_failure(error)
            or "database is locked" in str(error.orig))
