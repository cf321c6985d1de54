"""How a repository call reaches its database, decided once per call.

A call made with the caller's enginefacade context while that context has
a transaction open (of the same transaction context manager) joins it, so
its work commits or rolls back with the caller's; it is then not retried,
since the caller owns the transaction. Otherwise the call runs alone: a
write in a transaction of its own, a read on role_stash's reader engine
(in autocommit where the dialect says so), both retried on deadlock and
lost connection. With a read replica configured ([database]
slave_connection), the lone metadata reads ask it first, and the primary
for what it lacks. Every call's work runs with role_stash's statements in
the schema of its tables (see role_stash.db.schemas).

A lone metadata read (the metadata GET's) is first tried once, bare, on a
kept Connection of the reader engine (see Database.bare_read).
"""

import threading
import typing

from oslo_db import exception as db_exc

from role_stash import exception
from role_stash.db import dialects
from role_stash.db import engines
from role_stash.db import errors
from role_stash.db import oslo_internals
from role_stash.db import schemas


class Route(typing.NamedTuple):
    """Where the calls made on one enginefacade factory go."""

    factory: object
    lone_engines: engines.LoneEngines
    statements: dialects.Statements
    # The kept_connections.KeptConnections a lone metadata read is tried
    # bare on (see Database.bare_read), or None: the schema of role_stash's
    # tables not found yet, or no Connection kept here.
    bare_reader: object


class Database:
    """A repository's way to its database: the enginefacade context
    manager, and the engines of lone calls, built at the first call."""

    def __init__(self, context_manager, schema=schemas.AUTOMATIC):
        """schema: where role_stash's tables are (None: the default
        schema), else found on the first call's connection."""
        self.context_manager = context_manager
        self._wanted_schema = schemas.validated(schema)
        # (the enginefacade factory it was found on, the schema found).
        self._found = (None, self._wanted_schema)
        self._engines = None
        self._route = None
        self._lock = threading.Lock()

    def _set_found(self, found):
        self._found = found
        self._route = None

    def in_schema(self, work, named_in=None):
        """Return work, run with role_stash's statements in the schema of
        its tables: the connection maps the unnamed schema to it while
        work runs, then maps as it did, since it may be the caller's.
        named_in: the schema work's statements name themselves, if any
        (Statements.schema): there, no map."""
        if named_in is not None:
            def run_named(connection):
                try:
                    return work(connection)
                except db_exc.DBNonExistentTable:
                    self._set_found((None, self._wanted_schema))
                    raise
            return run_named

        def run(connection):
            schema = self.schema
            if schema is schemas.AUTOMATIC:
                schema = schemas.locate(connection, self._wanted_schema)
                self._set_found((oslo_internals.factory_of(
                    self.context_manager), schema))
            before = connection.get_execution_options().get(
                "schema_translate_map")
            if schema is not None:
                connection.execution_options(
                    schema_translate_map=schemas.translate_map(schema))
            try:
                return work(connection)
            except db_exc.DBNonExistentTable:
                # Moved since they were found (db move-tables): the next
                # call looks again.
                self._set_found((None, self._wanted_schema))
                raise
            finally:
                if schema is not None:
                    connection.execution_options(
                        schema_translate_map=before)
        return run

    @property
    def schema(self):
        """The schema of role_stash's tables (None: the default one), or
        schemas.AUTOMATIC until a call finds it; found anew on another
        database (a test suite patching another factory in)."""
        if self._wanted_schema is not schemas.AUTOMATIC:
            return self._wanted_schema
        factory, schema = self._found
        if factory is not oslo_internals.factory_of(self.context_manager):
            return schemas.AUTOMATIC
        return schema

    @property
    def lone_engines(self):
        """The engines.LoneEngines of calls made alone."""
        lone = self._engines
        if lone is None or lone.factory is not oslo_internals.factory_of(
                self.context_manager):
            # Under the lock: threads making their first calls at once
            # would each build a reader engine, and hold its connections.
            with self._lock:
                lone = self._engines
                if lone is None or (lone.factory is not
                                    oslo_internals.factory_of(
                                        self.context_manager)):
                    # Built anew when a test suite patched another factory
                    # into the context manager (Nova's does, per test).
                    if lone is not None:
                        lone.close()
                    lone = self._engines = engines.LoneEngines(
                        self.context_manager, lambda name: (
                            dialects.for_dialect(name).read_engine_options),
                        lambda name: (
                            dialects.for_dialect(name).write_engine_options))
        return lone

    def statements(self):
        """The dialects.Statements of this database, their metadata reads
        named in the schema of role_stash's tables once it is known."""
        return self.route().statements

    def route(self):
        """The Route of a call made now, worked out again when the context
        manager's factory, or the schema found, changed."""
        route = self._route
        factory = oslo_internals.factory_of(self.context_manager)
        if route is not None and route.factory is factory and (
                route.bare_reader is not None):
            return route
        bare_reader = self._bare_reader()
        if route is None or route.factory is not factory or (
                bare_reader is not None):
            schema = self.schema
            lone = self.lone_engines
            route = self._route = Route(factory, lone, dialects.for_dialect(
                lone.dialect_name,
                None if schema is schemas.AUTOMATIC else schema),
                bare_reader)
        return route

    def _bare_reader(self):
        if self.schema is schemas.AUTOMATIC:
            return None
        return self.lone_engines.kept_reader()

    def bare_read(self, context, read, instance_uuids):
        """Return {instance_uuid: value} of read(statements, connection,
        uuids), a read of the statements' METADATA_READS made with context
        (None, or the caller's enginefacade context), tried once, bare; or
        None when it was not tried, or failed: the caller then makes the
        read in full (Call.read_replica_first).

        It is tried when the read is made alone, with the route and the
        schema known and a Connection kept: on that Connection, with no
        retry, error translation or schema map around it (a connect, which
        may fail, is left to the full read). A metadata GET
        makes it amid the whole of Nova's request, which leaves the CPU's
        caches cold, and every layer of Python around a statement then
        costs its time again on every call. A bare try fails on what the
        full read's first try would fail on; the full read then runs it
        again, retried and translated: a read changes nothing, so running
        it twice is safe. Each repository method makes that full read
        itself, with no helper between: oslo.db's connection_trace names
        the three frames above the statement, and they name the method.
        """
        route = self._route
        if (route is None or route.bare_reader is None
                or route.factory is not oslo_internals.factory_of(
                    self.context_manager)
                or oslo_internals.open_transaction(context) is not None):
            return None
        kept_reader = route.bare_reader
        kept = kept_reader.take_kept()
        if kept is None:
            return None
        try:
            found = read(route.statements, kept.connection, instance_uuids)
        except BaseException as error:
            kept.connection.close()
            if not isinstance(error, Exception):
                raise
            return None
        kept_reader.keep(kept)
        return found

    def call(self, context, *, writer):
        """Return the Call of a repository method given context (None, or
        the caller's enginefacade context); writer says whether it
        writes."""
        return Call(self, context, writer)

    def close(self):
        """Dispose of the engines built for lone calls."""
        self._route = None  # it holds their kept Connections
        if self._engines is not None:
            self._engines.close()


def _joins(context, context_manager, writer):
    """Say whether a call joins the transaction context has open; refuse a
    transaction it cannot join."""
    transaction = oslo_internals.open_transaction(context)
    if transaction is None:
        return False
    if not oslo_internals.same_factory(transaction, context_manager):
        # It would commit apart, whatever the caller's fate.
        raise exception.InvalidArgument(
            "context", "its open transaction is of another enginefacade "
            "context manager; build the StashRepository on the caller's")
    if writer and oslo_internals.transaction_is_reader(transaction):
        raise exception.InvalidArgument(
            "context", "its open transaction is a reader's, and a stash "
            "write cannot join it; open it with the context manager's "
            "writer (context_manager.writer.using(context))")
    return True


class Call:
    """One repository call: joined to the caller's transaction or alone,
    as decided when it is made."""

    def __init__(self, database, context, writer):
        self._database = database
        self._context = context
        self._writer = writer
        self.joined = _joins(context, database.context_manager, writer)
        route = database.route()
        self._lone_engines = route.lone_engines
        self.statements = route.statements

    def run(self, work, *, on_duplicate=None, named=False):
        """Return work(connection), in the caller's transaction or alone,
        retried. When the database reports a duplicate entry, return
        on_duplicate() instead (it may raise); without it, that is a
        DatabaseError. named: work runs only the statements'
        METADATA_READS and STASH_WRITES, which may name their schema
        themselves."""
        work = self._database.in_schema(work, self._named_in(named))
        with errors.translated_errors():
            try:
                if self.joined:
                    return self._run_joined(work)
                return self._lone_engines.run(self._writer, work)
            except db_exc.DBDuplicateEntry as error:
                if on_duplicate is None:
                    raise
                errors.hide_bound_parameters(error)
                return on_duplicate()

    def _run_joined(self, work):
        manager = self._database.context_manager
        # A read joins whatever reader the caller opened, an async one (on
        # the replica) included, as oslo.db's reader.allow_async does for a
        # DB API read (last: a .connection after it would drop it).
        manager = (manager.writer.connection if self._writer
                   else manager.reader.connection.allow_async)
        with manager.using(self._context) as connection:
            return work(connection)

    def run_in_autocommit(self, work, *, named=False):
        """Return work(connection) alone in autocommit, retried; None when
        the call is joined, or lone reads are not in autocommit here.
        named: as run's."""
        if self.joined:
            return None
        with errors.translated_errors():
            return self._lone_engines.run_in_autocommit(
                self._database.in_schema(work, self._named_in(named)))

    def _named_in(self, named):
        """The schema a named call's statements name (see
        Database.in_schema)."""
        return self.statements.schema if named else None

    def read_replica_first(self, read, instance_uuids):
        """Return {instance_uuid: value} of read(statements, connection,
        uuids), a read of the statements' METADATA_READS.

        Alone, with a read replica configured, read there first, and ask
        the primary for the instances the replica lacks: not replayed there
        yet, or all of them when the replica failed. So a stash written a
        moment ago is never answered "no stash". Joined, or with no
        replica, only the primary reads.
        """
        lone = self._lone_engines
        replica = None if self.joined else lone.replica()
        found = {}
        if replica is not None:
            try:
                found = lone.run_on_replica(
                    replica, self._database.in_schema(
                        lambda connection: read(
                            self.statements, connection, instance_uuids),
                        self._named_in(True)))
            except exception.DatabaseError:
                pass  # logged; the primary answers
            instance_uuids = [instance_uuid for instance_uuid in
                              instance_uuids if instance_uuid not in found]
            if not instance_uuids:
                return found
        primary = self.run(lambda connection: (
            read(self.statements, connection, instance_uuids)),
            named=True)
        return {**found, **primary} if found else primary


def raising(error_class, *args):
    """Return an on_duplicate for Call.run that raises error_class(*args)."""
    def on_duplicate():
        raise error_class(*args)
    return on_duplicate
