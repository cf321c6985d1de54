"""Every option role_stash reads, for oslo-config-generator's
`oslo.config.opts` entry point: `oslo-config-generator --namespace
role_stash` writes etc/role_stash.conf.sample."""

from oslo_db import options as db_options

from role_stash.conf import manage
from role_stash.conf import vendordata


def list_opts():
    """Return [(group, options)] of every option role_stash reads: oslo.db's
    [database] (the stash's database, its pools and retries), the dynamic
    vendordata drop-in's [api] and [vendordata_dynamic_auth], and
    role-stash-manage's [role_stash] (oslo.log's options are oslo.log's
    namespace)."""
    return [
        ("database", list(db_options.database_opts)),
        (vendordata.API_GROUP, list(vendordata.API_OPTIONS)),
        (vendordata.AUTH_GROUP, vendordata.auth_options()),
        (manage.GROUP, list(manage.OPTIONS)),
    ]
