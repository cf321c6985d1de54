"""The command part: role-stash-manage (manage) and its upgrade checks
(status)."""
