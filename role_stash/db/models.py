"""SQLAlchemy models: the schema's present, alembic/versions/ its history."""

import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from role_stash.db import types

UUID_LENGTH = 36
# Keystone's ids and role names fit in 255 characters.
ID_LENGTH = 255
ROLE_NAME_LENGTH = 255
# An HTTP date (IMF-fixdate is 29 characters), as a reply's Last-Modified.
LAST_MODIFIED_LENGTH = 64
REQUEST_DIGEST_LENGTH = 64

NAMING_CONVENTION = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "uniq_%(table_name)s0%(column_0_N_name)s",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

MYSQL_TABLE_ARGS = types.mysql_table_args()
BigId = types.BigId
Timestamp = types.Timestamp
ReplyBody = types.ReplyBody


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


# role_stash's Alembic version table: named for this package, so the
# schema can share a database (Nova's, say) with another Alembic-managed
# project.
VERSION_TABLE = "role_stash_alembic_version"


def metadata_in(schema):
    """Return a MetaData of copies of role_stash's tables in schema (None:
    the connection's default schema), as migrations compare them."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata, schema=schema)
    return metadata


class _StashColumns:
    """The columns of a stash but its id, live and archived alike."""

    instance_uuid: orm.Mapped[str] = orm.mapped_column(sa.String(UUID_LENGTH))
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH))
    project_domain_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(ID_LENGTH))
    user_domain_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(ID_LENGTH))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp)
    updated_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        Timestamp)
    deleted_at: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        Timestamp)
    deleted: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, server_default=sa.text("0"))


class Stash(_StashColumns, Base):
    """The creating user's identity for one instance.

    A live stash has deleted == 0; soft delete sets deleted to the row's id,
    so the unique (instance_uuid, deleted) pair allows one live stash per
    instance and any number of deleted ones, on every backend.
    """

    __tablename__ = "role_stashes"
    __table_args__ = (
        sa.UniqueConstraint("instance_uuid", "deleted"),
        sa.Index(None, "project_id", "deleted", "id"),
        sa.Index(None, "deleted_at"),
        MYSQL_TABLE_ARGS,
    )

    id: orm.Mapped[int] = orm.mapped_column(
        BigId, primary_key=True)


class _StashRoleColumns:
    """The columns of a stash's role but its stash_id."""

    position: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=False)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(ROLE_NAME_LENGTH))


class StashRole(_StashRoleColumns, Base):
    """One role of a stash, at its position in the creating user's list."""

    __tablename__ = "role_stash_roles"
    __table_args__ = (
        sa.UniqueConstraint("stash_id", "name"),
        sa.Index(None, "name", "stash_id"),
        MYSQL_TABLE_ARGS,
    )

    stash_id: orm.Mapped[int] = orm.mapped_column(
        BigId, sa.ForeignKey(Stash.id, ondelete="CASCADE"), primary_key=True)


class _VendordataReplyColumns:
    """The columns of a cached vendordata reply."""

    id: orm.Mapped[int] = orm.mapped_column(BigId, primary_key=True)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(sa.String(UUID_LENGTH))
    target: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH))
    body: orm.Mapped[str] = orm.mapped_column(ReplyBody)
    etag: orm.Mapped[str | None] = orm.mapped_column(sa.String(ID_LENGTH))
    last_modified: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(LAST_MODIFIED_LENGTH))
    stored_at: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp)
    fresh_until: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        Timestamp)
    stale_until: orm.Mapped[datetime.datetime | None] = orm.mapped_column(
        Timestamp)
    keep_until: orm.Mapped[datetime.datetime] = orm.mapped_column(Timestamp)
    # The SHA-256, in hex, of the URL and JSON body the reply answers.
    request_digest: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(REQUEST_DIGEST_LENGTH))


class VendordataReply(_VendordataReplyColumns, Base):
    """A dynamic vendordata service's reply for one instance, kept as long
    as its Cache-Control lets a private cache keep it (see http_cache)."""

    __tablename__ = "role_stash_vendordata"
    __table_args__ = (
        sa.UniqueConstraint("instance_uuid", "target"),
        sa.Index(None, "keep_until"),
        MYSQL_TABLE_ARGS,
    )


# Shadow tables, as Nova's: the live table's columns, where archive
# (role_stash.db.archive) moves deleted rows; no unique constraint, since
# history may hold any number of stashes of one instance, and no foreign
# key, since a batch moves a stash and its roles together. Named
# <table>_shadow, not Nova's shadow_<table>: in a database shared with
# Nova, Nova's first migration creates shadow_<table> of every table it
# finds (it would fail on ours), and `nova-manage db purge` empties every
# shadow_ table it finds.

class ShadowStash(_StashColumns, Base):
    """An archived stash, under its id in role_stashes, which its archived
    roles name; purged oldest first, by (deleted_at, id)."""

    __tablename__ = "role_stashes_shadow"
    __table_args__ = (
        sa.Index(None, "deleted_at", "id"),
        MYSQL_TABLE_ARGS,
    )

    id: orm.Mapped[int] = orm.mapped_column(
        BigId, primary_key=True, autoincrement=False)


class ShadowStashRole(_StashRoleColumns, Base):
    """An archived stash's role."""

    __tablename__ = "role_stash_roles_shadow"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    stash_id: orm.Mapped[int] = orm.mapped_column(
        BigId, primary_key=True, autoincrement=False)


class ShadowVendordataReply(_VendordataReplyColumns, Base):
    """An archived vendordata reply, under an id of this table's own (a
    reply's id in role_stash_vendordata names nothing else, and SQLite
    gives a deleted row's id again); purged by (keep_until, id)."""

    __tablename__ = "role_stash_vendordata_shadow"
    __table_args__ = (
        sa.Index(None, "keep_until", "id"),
        MYSQL_TABLE_ARGS,
    )


# The Core tables, which every statement is built on.
STASHES = Stash.__table__
ROLES = StashRole.__table__
REPLIES = VendordataReply.__table__
SHADOW_STASHES = ShadowStash.__table__
SHADOW_ROLES = ShadowStashRole.__table__
SHADOW_REPLIES = ShadowVendordataReply.__table__
