"""The raw drivers: how to connect with each, count its round trips, and run
the repository's statements on it."""

import contextlib
import dataclasses
import datetime
import importlib
import sqlite3

_STASH_COLUMNS = ("s.id, s.instance_uuid, s.project_id, s.user_id, "
                  "s.project_domain_id, s.user_domain_id, s.created_at, "
                  "s.updated_at")
# The repository's SELECTs, as each backend reads them: one row per role,
# or on PostgreSQL one row per stash with its role names in an array.
READ_SQL = (f"SELECT {_STASH_COLUMNS}, r.name FROM role_stashes s "
            "LEFT OUTER JOIN role_stash_roles r ON r.stash_id = s.id "
            "WHERE s.instance_uuid {match} AND s.deleted = 0 "
            "ORDER BY s.id, r.position")
READ_SQL_ROLE_ARRAY = (
    f"SELECT {_STASH_COLUMNS}, ARRAY(SELECT r.name FROM role_stash_roles r "
    "WHERE r.stash_id = s.id ORDER BY r.position) FROM role_stashes s "
    "WHERE s.instance_uuid {match} AND s.deleted = 0 ORDER BY s.id")
INSERT_STASHES_SQL = (
    "INSERT INTO role_stashes "
    "(instance_uuid, project_id, user_id, created_at, deleted) VALUES ")
INSERT_ROLES_SQL = (
    "INSERT INTO role_stash_roles (stash_id, position, name) VALUES ")
# PostgreSQL's write of a new stash, as the repository's: one statement.
WRITE_SQL_ONE_STATEMENT = (
    "WITH s AS (" + INSERT_STASHES_SQL + "(%s, %s, %s, %s, 0) "
    "ON CONFLICT (instance_uuid, deleted) DO NOTHING RETURNING id), "
    "r AS (INSERT INTO role_stash_roles (stash_id, position, name) "
    "SELECT s.id, n.number - 1, n.name FROM s "
    "JOIN unnest(CAST(%s AS TEXT[])) WITH ORDINALITY AS n(name, number) "
    "ON true) SELECT id FROM s")
ROLES = ("member", "reader", "admin")
BULK = 100


def timestamp():
    """Return the current UTC time as the text a created_at column takes."""
    return datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None).isoformat(" ", "microseconds")


def _connect_sqlite3(url, autocommit, application_name=None):
    return sqlite3.connect(
        url.database, isolation_level=None if autocommit else "DEFERRED",
        check_same_thread=False)


def _libpq_arguments(url, application_name):
    arguments = dict(host=url.host, port=url.port or 5432,
                     user=url.username, password=url.password or "",
                     dbname=url.database, **url.query)
    if application_name:
        arguments["application_name"] = application_name
    return arguments


def _connect_psycopg2(url, autocommit, application_name=None):
    import psycopg2
    connection = psycopg2.connect(**_libpq_arguments(url, application_name))
    connection.autocommit = autocommit
    return connection


def _connect_psycopg(url, autocommit, application_name=None):
    # psycopg 3's ordinary connection: it prepares a statement on the
    # server once it has run prepare_threshold times, the driver's own
    # speed-up, which the repository gets on the same driver.
    import psycopg
    return psycopg.connect(autocommit=autocommit,
                           **_libpq_arguments(url, application_name))


def _mysql_arguments(url):
    return dict(host=url.host, port=url.port or 3306, user=url.username,
                password=url.password or "", database=url.database,
                charset=url.query.get("charset", "utf8mb4"))


def _connect_pymysql(url, autocommit, application_name=None):
    import pymysql
    return pymysql.connect(autocommit=autocommit, **_mysql_arguments(url))


def _connect_mysqldb(url, autocommit, application_name=None):
    import MySQLdb
    connection = MySQLdb.connect(**_mysql_arguments(url))
    connection.autocommit(autocommit)
    return connection


@contextlib.contextmanager
def _sqlite_round_trips(url, tick):
    """Yield url and a watch(connection) ticking per statement SQLite runs."""
    yield url, lambda connection: connection.set_trace_callback(tick)


class _StatementNotices:
    """A psycopg2 notices list that ticks per statement the server logged."""

    def __init__(self, tick):
        self.tick = tick

    def append(self, notice):
        if notice.startswith("LOG:  statement: "):
            self.tick()


def _psycopg_notice_ticker(tick):
    # psycopg 3 uses the extended protocol: the server logs each run as
    # "execute <name>: ...", whether the statement was prepared or not.
    def on_notice(diagnostic):
        if (diagnostic.message_primary or "").startswith(
                ("statement: ", "execute ")):
            tick()
    return on_notice


def _logging_url(url):
    """Return url asking the server to send its statement log as notices."""
    options = url.query.get("options", "") + (
        " -c log_statement=all -c client_min_messages=log")
    return url.update_query_dict({"options": options.strip()})


@contextlib.contextmanager
def _psycopg2_round_trips(url, tick):
    """Yield url sending statement logs to the client, and a watch ticking."""
    yield _logging_url(url), lambda connection: setattr(
        connection, "notices", _StatementNotices(tick))


@contextlib.contextmanager
def _psycopg_round_trips(url, tick):
    """Yield url sending statement logs to the client, and a watch ticking."""
    on_notice = _psycopg_notice_ticker(tick)
    yield _logging_url(url), lambda connection: (
        connection.add_notice_handler(on_notice))


@contextlib.contextmanager
def _pymysql_round_trips(url, tick):
    """Yield url and a no-op watch; meanwhile each PyMySQL request ticks."""
    from pymysql.connections import Connection
    send = Connection._execute_command

    def counted(connection, command, sql):
        tick()
        return send(connection, command, sql)

    Connection._execute_command = counted
    try:
        yield url, lambda connection: None
    finally:
        Connection._execute_command = send


@dataclasses.dataclass(frozen=True)
class Driver:
    """How to reach a database with one DB-API driver."""

    name: str  # as in SQLAlchemy's URL: postgresql+<name>://
    module: str  # what to import
    connect: object  # (url, autocommit, application_name=None) -> connection
    placeholder: str
    # (url, tick) -> context of (url to count on, watch(DB-API connection));
    # None: this driver's round trips are not counted.
    count_round_trips: object = None

    def available(self):
        """Return whether the driver can be imported here."""
        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True


DRIVERS = {driver.name: driver for driver in (
    Driver("sqlite3", "sqlite3", _connect_sqlite3, "?", _sqlite_round_trips),
    Driver("psycopg2", "psycopg2", _connect_psycopg2, "%s",
           _psycopg2_round_trips),
    Driver("psycopg", "psycopg", _connect_psycopg, "%s",
           _psycopg_round_trips),
    Driver("pymysql", "pymysql", _connect_pymysql, "%s",
           _pymysql_round_trips),
    Driver("mysqldb", "MySQLdb", _connect_mysqldb, "%s"),
)}


class Statements:
    """The repository's SQL on one backend, in one driver's placeholders;
    its tables in schema (None: unqualified)."""

    def __init__(self, arrays, placeholder, schema=None):
        # As the repository does on PostgreSQL: role names come back in an
        # array, a bulk read matches one array parameter, and a new stash
        # is one statement in autocommit.
        self.arrays = arrays

        def sql(text):
            if schema is not None:
                for table in ("role_stashes", "role_stash_roles"):
                    text = text.replace(f" {table} ", f" {schema}.{table} ")
            return text.replace("?", placeholder)

        read_sql = READ_SQL_ROLE_ARRAY if arrays else READ_SQL
        self.read = sql(read_sql.format(match="= ?"))
        self.bulk_read = sql(read_sql.format(
            match="= ANY(?)" if arrays
            else "IN (" + ", ".join("?" * BULK) + ")"))
        self.insert_stash = sql(INSERT_STASHES_SQL + "(?, ?, ?, ?, 0) "
                                "RETURNING id")
        self.insert_roles = sql(INSERT_ROLES_SQL + ", ".join(
            ["(?, ?, ?)"] * len(ROLES)))
        self.write_one_statement = sql(WRITE_SQL_ONE_STATEMENT)

    def write(self, connection, instance_uuid):
        """Stash ROLES for instance_uuid on a DB-API connection, in its
        transaction: on PostgreSQL in one statement, else two."""
        cursor = connection.cursor()
        if self.arrays:
            cursor.execute(self.write_one_statement, (
                instance_uuid, "project-w", "user-w", timestamp(),
                list(ROLES)))
            cursor.fetchone()
            return
        cursor.execute(self.insert_stash,
                       (instance_uuid, "project-w", "user-w", timestamp()))
        (stash_id,) = cursor.fetchone()
        cursor.execute(self.insert_roles, [
            value for position, name in enumerate(ROLES)
            for value in (stash_id, position, name)])

    def roles_by_uuid(self, rows):
        """Return {instance UUID: role names} of read rows."""
        if self.arrays:
            return {row[1]: tuple(row[8]) for row in rows}
        found = {}
        for row in rows:
            names = found.setdefault(row[1], [])
            if row[8] is not None:
                names.append(row[8])
        return {key: tuple(names) for key, names in found.items()}


class RawClient:
    """A raw driver's kept-open connections doing the repository's work:
    an autocommit reader and a transactional writer."""

    def __init__(self, driver, url, arrays, application_name=None,
                 writes=True):
        self.driver = driver
        self.statements = Statements(arrays, driver.placeholder)
        self.reader = driver.connect(url, autocommit=True,
                                     application_name=application_name)
        self.writer = None
        if writes and not arrays:
            self.writer = driver.connect(url, autocommit=False,
                                         application_name=application_name)

    def connections(self):
        """Return the DB-API connections this client holds."""
        return [c for c in (self.reader, self.writer) if c is not None]

    def close(self):
        """Close every connection."""
        for connection in self.connections():
            connection.close()

    def _select(self, sql, params):
        cursor = self.reader.cursor()
        cursor.execute(sql, params)
        return cursor.fetchall()

    def get_stash(self, instance_uuid):
        """Read one stash's rows, as the repository's get_stash."""
        return self._select(self.statements.read, (instance_uuid,))

    def get_stashes(self, instance_uuids):
        """Read BULK stashes' rows, as the repository's get_stashes."""
        return self._select(
            self.statements.bulk_read,
            (instance_uuids,) if self.statements.arrays else instance_uuids)

    def stash_roles(self, instance_uuid):
        """Insert a stash with its roles in one committed transaction (on
        PostgreSQL one statement, in autocommit)."""
        if self.statements.arrays:
            self.statements.write(self.reader, instance_uuid)
            return
        self.statements.write(self.writer, instance_uuid)
        self.writer.commit()
