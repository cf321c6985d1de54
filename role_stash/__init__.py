"""role_stash: each instance's create-time roles, kept for metadata GETs."""
