"""role_stash's configuration options, for oslo-config-generator's
`oslo.config.opts` entry point: `oslo-config-generator --namespace
role_stash` writes etc/role_stash.conf.sample."""

from keystoneauth1 import loading as ks_loading
from oslo_db import options as db_options

from role_stash import orphans
from role_stash import upgrade_checks
from role_stash import vendordata

# role-stash-manage's own options (role_stash.cli registers them).
MANAGE_GROUP = "role_stash"
MANAGE_OPTIONS = orphans.OPTIONS + upgrade_checks.OPTIONS


def list_opts():
    """Return [(group, options)] of every option role_stash reads: oslo.db's
    [database] (the stash's database, its pools and retries), the dynamic
    vendordata drop-in's [api] and [vendordata_dynamic_auth], and
    role-stash-manage's [role_stash] (oslo.log's options are oslo.log's
    namespace)."""
    auth = (ks_loading.get_session_conf_options()
            + ks_loading.get_auth_common_conf_options())
    return [
        ("database", list(db_options.database_opts)),
        (vendordata.API_GROUP, list(vendordata.API_OPTIONS)),
        (vendordata.AUTH_GROUP, auth),
        (MANAGE_GROUP, list(MANAGE_OPTIONS)),
    ]
