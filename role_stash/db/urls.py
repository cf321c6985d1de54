"""Database URLs: the one a repository or a command uses when none is given,
and the character set of MySQL's connections, which oslo.db would choose
otherwise."""

import os

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash import exception

# The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///role_stash.sqlite"
URL_ENVIRONMENT_VARIABLE = "ROLE_STASH_DATABASE_URL"


def resolve_url(url=None):
    """Return url, else $ROLE_STASH_DATABASE_URL, else the SQLite default;
    InvalidArgument if it is not a database URL."""
    if url is None:
        url = os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
    try:
        if "\x00" in str(url):
            raise ValueError("NUL")
        make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        # Not repeated: the URL may hold a password.
        raise exception.InvalidArgument(
            "database connection", "not a database URL "
            "(dialect+driver://user:password@host:port/database)") from None
    return url


def _names_no_charset(url, options):
    """Whether a MySQL or MariaDB URL and its options leave the
    connection's charset to the driver's caller (oslo.db then asks for
    3-byte utf8 on a mysql:// URL; on a mariadb:// one the driver's
    default holds)."""
    parsed = make_url(url)
    return (parsed.get_backend_name() in ("mysql", "mariadb")
            and "charset" not in parsed.query
            and "charset=" not in (options.get("connection_parameters") or ""))


def oslo_db_asks_for_utf8(url, options):
    """Whether oslo.db connects through url and options in 3-byte utf8:
    its MySQL connection arguments are for mysql:// URLs alone."""
    return (make_url(url).get_backend_name() == "mysql"
            and _names_no_charset(url, options))


def with_utf8mb4(url, options):
    """Return options with MySQL's connection in 4-byte utf8mb4, unless the
    URL or the options name a charset (oslo.db would ask for 3-byte utf8,
    and role names may hold any unicode character)."""
    if _names_no_charset(url, options):
        parameters = options.get("connection_parameters") or ""
        options = {**options, "connection_parameters": "&".join(
            filter(None, (parameters, "charset=utf8mb4")))}
    return options
