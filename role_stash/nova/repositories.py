"""Glue for Nova: the repository of a RequestContext's database, per cell.

No SQL here, and no import of Nova when this module loads: Nova is not a
dependency of role_stash. The calls Nova makes (contrib/nova/patches) are
in role_stash.nova.hooks and the admin guide's "Running inside Nova".
"""

import logging
import threading
import weakref

from role_stash.db import api

LOG = logging.getLogger(__name__)

# One repository per enginefacade context manager (Nova keeps one per cell
# in nova.context.CELL_CACHE), kept on the context manager itself, so that
# it goes with it: a weak-keyed mapping would keep both forever, since
# the repository holds its context manager, and with them the
# connections the repository keeps.
_REPOSITORY_ATTRIBUTE = "_role_stash_repository"
_lock = threading.Lock()


def context_manager_of(context, main_context_manager=None):
    """Return the enginefacade context manager Nova's database API uses for
    context: the cell's, when nova.context.target_cell set
    context.db_connection, else main_context_manager, by default the one
    nova.db.main.api.get_context_manager(context) picks (Nova's main
    context manager; in Nova's functional harness, the cell its fixture
    has current)."""
    context_manager = getattr(context, "db_connection", None)
    if context_manager is not None:
        return context_manager
    if main_context_manager is None:
        # Only ever called inside a Nova process.
        from nova.db.main import api as nova_main_db
        return nova_main_db.get_context_manager(context)
    return main_context_manager


def repository_for(context, main_context_manager=None):
    """Return the StashRepository of context's database (see
    context_manager_of), built once per context manager and reused, so
    its calls join the transactions Nova opens there."""
    return _repository_on(context_manager_of(context, main_context_manager))


def _repository_on(context_manager):
    repository = getattr(context_manager, _REPOSITORY_ATTRIBUTE, None)
    if repository is None:
        with _lock:
            repository = getattr(context_manager, _REPOSITORY_ATTRIBUTE, None)
            if repository is None:
                repository = api.StashRepository(context_manager)
                setattr(context_manager, _REPOSITORY_ATTRIBUTE, repository)
    return repository


# instance -> context manager of its cell, for as long as Nova keeps that
# Instance object (its metadata cache does, for metadata_cache_expiration):
# the mapping is looked up once per object, not once per call.
_cells_of_instances = weakref.WeakKeyDictionary()


def repository_of_instance(instance, main_context_manager=None):
    """Return the StashRepository of the cell database that holds
    instance, whether or not the instance still carries a context.

    Nova's InstanceMetadata strips the instance's context, so, as Nova's
    metadata handler does, the cell is found from the instance mapping in
    the API database and targeted with nova.context.target_cell. A process
    with no [api_database] connection (nova-compute, building a config
    drive) reads its own [database], which is that cell's, as does an
    instance the API database does not map.
    """
    context = getattr(instance, "_context", None)
    if getattr(context, "db_connection", None) is not None:
        return repository_for(context, main_context_manager)
    context_manager = _cells_of_instances.get(instance)
    if context_manager is None:
        cell_context, mapped = _cell_context(instance.uuid)
        context_manager = context_manager_of(cell_context,
                                             main_context_manager)
        if mapped:
            _cells_of_instances[instance] = context_manager
    return _repository_on(context_manager)


def _cell_context(instance_uuid):
    """Return (an admin RequestContext targeted at the cell that the API
    database maps instance_uuid to, True), else (an untargeted one, for
    Nova's [database], False); an API database that fails is logged."""
    from nova import context as nova_context
    from nova import exception as nova_exception
    from nova import objects
    import nova.conf
    from oslo_db import exception as db_exception

    admin = nova_context.get_admin_context()
    if nova.conf.CONF.api_database.connection is None:
        return admin, False
    try:
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            admin, instance_uuid)
    except nova_exception.InstanceMappingNotFound:
        return admin, False
    except db_exception.DBError as error:
        # The metadata GET goes on, as a metadata service local to its
        # cell would.
        LOG.warning("role_stash could not look up the cell of instance "
                    "%s in the API database: %s; reading [database]",
                    instance_uuid, error)
        return admin, False
    with nova_context.target_cell(admin, mapping.cell_mapping) as cell:
        return cell, mapping.cell_mapping is not None
