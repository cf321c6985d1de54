"""The vendordata drop-in's public name, kept for deployments that point
Nova at role_stash.vendordata.DynamicVendorData: it is
role_stash.nova.vendordata's."""

from role_stash.nova.vendordata import DynamicVendorData  # noqa: F401
