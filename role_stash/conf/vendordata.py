"""Options of the dynamic vendordata drop-in: Nova's [api] vendordata
options and the service account of [vendordata_dynamic_auth]."""

import weakref

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

API_GROUP = "api"
AUTH_GROUP = "vendordata_dynamic_auth"

# Nova's own definitions (nova/conf/api.py), for a process that has not
# registered them: registering an identical option twice is a no-op.
API_OPTIONS = [
    cfg.ListOpt("vendordata_dynamic_targets", default=[],
                help="name@url of each dynamic vendordata service"),
    cfg.StrOpt("vendordata_dynamic_ssl_certfile", default="",
               help="CA bundle to verify an https:// service with"),
    cfg.IntOpt("vendordata_dynamic_connect_timeout", default=5, min=3,
               help="seconds to wait for a connection"),
    cfg.IntOpt("vendordata_dynamic_read_timeout", default=5, min=0,
               help="seconds to wait for the reply"),
    cfg.BoolOpt("vendordata_dynamic_failure_fatal", default=False,
                help="whether a failed call fails the request (or, with "
                     "config drive, the build)"),
]

# The ConfigOpts already seen (a Mapping: unhashable, so weak references).
_registered = []


def register_options(conf):
    """Register the options the drop-in reads, where Nova has not."""
    if any(seen() is conf for seen in _registered):
        return
    registrations = [lambda option=option: conf.register_opt(option, API_GROUP)
                     for option in API_OPTIONS]
    registrations += [
        lambda: ks_loading.register_session_conf_options(conf, AUTH_GROUP),
        lambda: ks_loading.register_auth_conf_options(conf, AUTH_GROUP)]
    for register in registrations:
        try:
            register()
        except cfg.DuplicateOptError:
            pass  # Nova's, defined a little differently: use it.
    _registered.append(weakref.ref(conf))


def auth_options():
    """The options of [vendordata_dynamic_auth]: keystoneauth's session and
    common auth options."""
    return (ks_loading.get_session_conf_options()
            + ks_loading.get_auth_common_conf_options())
