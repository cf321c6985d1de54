"""role_stash: the create-time roles of each instance, kept for its metadata GETs."""
