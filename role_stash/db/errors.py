"""Error translation: oslo.db's and SQLAlchemy's errors become role_stash's,
their bound parameters (role names, ids) hidden, at the boundary of every
call."""

from oslo_db import exception as db_exc
import sqlalchemy as sa

from role_stash import exception


class _TranslatedErrors:
    """A with block's oslo.db and SQLAlchemy errors, as role_stash's."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, (db_exc.DBError, sa.exc.SQLAlchemyError)):
            hide_bound_parameters(error)
            raise _translated(error) from error
        return False


# A class rather than contextlib.contextmanager: every lone read passes
# here, and a generator's set-up is most of what the block costs.
_TRANSLATED_ERRORS = _TranslatedErrors()


def translated_errors():
    """Turn oslo.db's and SQLAlchemy's errors into role_stash's, their
    bound parameters hidden."""
    return _TRANSLATED_ERRORS


def _translated(error):
    if isinstance(error, sa.exc.ArgumentError):
        # A URL naming an unknown driver, or a bad engine setting.
        return exception.InvalidArgument("database connection", str(error))
    if isinstance(error, db_exc.DBDuplicateEntry):
        return exception.DatabaseError("unexpected duplicate entry")
    if isinstance(error, db_exc.DBConnectionError):
        return exception.DatabaseUnavailable(
            f"the database connection failed or was lost ({_cause(error)})")
    if isinstance(error, db_exc.DBNonExistentDatabase):
        return exception.DatabaseUnavailable(
            f"the database does not exist or cannot be opened "
            f"({_cause(error)})")
    if isinstance(error, db_exc.DBDeadlock) or is_serialization_failure(
            getattr(error, "inner_exception", None) or error):
        return exception.DatabaseDeadlock(
            "the transaction was rolled back, a deadlock's or a "
            "serialization failure's victim; retry it whole")
    if isinstance(error, sa.exc.TimeoutError):
        # Never retried: a retry would wait out pool_timeout once more.
        return exception.DatabaseUnavailable(
            f"no pooled connection came free within [database] "
            f"pool_timeout ({error.args[0]}); every connection of "
            f"max_pool_size and max_overflow was in use")
    if isinstance(error, sa.exc.DBAPIError) and error.statement is None:
        # Not raised by a statement: by the connect (psycopg's "connection
        # to server ... failed", which oslo.db does not recognize), or by
        # a COMMIT or ROLLBACK.
        return exception.DatabaseUnavailable(
            "the database could not be reached, or failed to end a "
            f"transaction ({_cause(error)})")
    return _database_error(error)


def _cause(error):
    """The driver's own words for a failure, on one line (they carry no
    bound values)."""
    cause = getattr(error, "inner_exception", None) or error
    return " ".join(str(getattr(cause, "orig", None) or cause).split())


# MySQL's "Incorrect string value": a character the connection's or the
# column's character set cannot hold.
_MYSQL_INCORRECT_STRING = 1366


def _database_error(error):
    cause = getattr(error, "inner_exception", None) or error
    driver_error = getattr(cause, "orig", None)
    code = getattr(driver_error, "args", (None,))[0]
    if code == _MYSQL_INCORRECT_STRING:
        return exception.DatabaseError(
            "MySQL refused a character its connection's character set "
            "cannot hold (4-byte characters such as emoji need utf8mb4): "
            "put charset=utf8mb4 in the [database] connection URL, and "
            "check that role_stash's tables are utf8mb4 "
            "(`role-stash-manage db sync` creates them so)")
    return exception.DatabaseError(
        f"database error ({type(cause).__name__}); if the schema is not "
        "at head, run `role-stash-manage db sync`")


def hide_bound_parameters(error):
    """Strip the bound values from an error and everything it chains: on
    an engine that is not role_stash's (the caller's), SQLAlchemy put them
    in the message, and oslo.db copied that message into its own error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa.exc.StatementError):
            _hide(error)
        inner = getattr(error, "inner_exception", None)
        if isinstance(error, db_exc.DBError) and isinstance(
                inner, sa.exc.StatementError):
            _hide(inner)
            error.args = (str(inner),)
        error = error.__cause__ or error.__context__


def _hide(statement_error):
    # Its message then says "[SQL parameters hidden ...]" where the values
    # were.
    statement_error.hide_parameters = True
    if statement_error.params:
        statement_error.params = "hidden"


# SQLSTATE of a transaction the server rolled back to keep it serializable
# (PostgreSQL's "could not serialize access"): retry it, as a deadlock.
_SERIALIZATION_FAILURE = "40001"


def is_serialization_failure(error):
    """Whether error (SQLAlchemy's) is PostgreSQL's serialization failure."""
    driver_error = getattr(error, "orig", None)
    return _SERIALIZATION_FAILURE in (
        getattr(driver_error, "sqlstate", None),   # psycopg 3
        getattr(driver_error, "pgcode", None))     # psycopg2
