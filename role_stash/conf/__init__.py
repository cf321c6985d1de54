"""role_stash's configuration options, declared here and nowhere else.

Each module of this package declares one group's options and imports no
feature of role_stash, as nova/conf/ does; the features read the options
they need from here. opts.list_opts feeds oslo-config-generator.
"""
