"""Glue for Nova: the repository of a RequestContext's database, per cell.

No SQL here, and no import of Nova when this module loads: Nova is not a
dependency of role_stash. The calls Nova makes are in the admin guide's
"Running inside Nova".
"""

import threading
import weakref

from role_stash.db import api

# One repository per enginefacade context manager (Nova keeps one per cell
# in nova.context.CELL_CACHE), dropped with it.
_repositories = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def context_manager_of(context, main_context_manager=None):
    """Return the enginefacade context manager Nova's database API uses for
    context: the cell's, when nova.context.target_cell set
    context.db_connection, else main_context_manager (default: Nova's
    nova.db.main.api.context_manager), as nova.db.main.api's
    get_context_manager() picks it."""
    context_manager = getattr(context, "db_connection", None)
    if context_manager is not None:
        return context_manager
    if main_context_manager is None:
        # Only ever called inside a Nova process.
        from nova.db.main import api as nova_main_db
        main_context_manager = nova_main_db.context_manager
    return main_context_manager


def repository_for(context, main_context_manager=None):
    """Return the StashRepository of context's database (see
    context_manager_of), built once per context manager and reused, so
    its calls join the transactions Nova opens there."""
    context_manager = context_manager_of(context, main_context_manager)
    repository = _repositories.get(context_manager)
    if repository is None:
        with _lock:
            repository = _repositories.get(context_manager)
            if repository is None:
                repository = _repositories[context_manager] = (
                    api.StashRepository(context_manager))
    return repository
