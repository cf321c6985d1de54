"""The Nova part: glue for Nova's processes (the repository of a
RequestContext's database), the dynamic vendordata drop-in and its HTTP
cache rules, the orphan sweep and the import of Nova's boot_roles. No SQL
here, and no import of Nova when a module loads: Nova is not a dependency.

The glue's helpers are this package's names, as role_stash.nova's were:
role_stash.nova.repository_for(context).
"""

from role_stash.nova.repositories import context_manager_of  # noqa: F401
from role_stash.nova.repositories import repository_for  # noqa: F401
