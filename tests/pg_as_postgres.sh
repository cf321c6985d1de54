#!/bin/sh
# Runs PostgreSQL's initdb or postgres (the name this is called by, through
# a symlink) as the postgres system user: both refuse to run as root, and CI
# runs as root. testing.postgresql passes -D <base_dir>/data; the whole
# base_dir (data, sockets) is handed to postgres first.
set -eu
real="${ROLE_STASH_PG_BINDIR:?}/$(basename "$0")"
data=
previous=
for argument in "$@"; do
    [ "$previous" = "-D" ] && data=$argument
    previous=$argument
done
chown -R postgres:postgres "$(dirname "${data:?no -D argument}")"
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$real" "$@"
