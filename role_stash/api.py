"""The repository's public name, kept for integrators: role_stash.api is
role_stash.db.api (from role_stash import api; api.StashRepository)."""

from role_stash.db.api import *  # noqa: F401,F403
from role_stash.db.api import __all__  # noqa: F401
