"""Create role_stash_vendordata: dynamic vendordata replies, cached.

Revision ID: 0002_create_vendordata_replies
Revises: 0001_create_role_stashes
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = "0002_create_vendordata_replies"
down_revision = "0001_create_role_stashes"
branch_labels = None
depends_on = None

phase = "expand"

TIMESTAMP = sa.DateTime().with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BODY = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def mysql_table_args():
    """As revision 0001's: utf8mb4, a binary NO PAD collation."""
    context = op.get_context()
    mariadb = context.as_sql or getattr(context.dialect, "is_mariadb", True)
    return {
        "mysql_engine": "InnoDB",
        "mysql_charset": "utf8mb4",
        "mysql_collate": ("utf8mb4_nopad_bin" if mariadb
                          else "utf8mb4_0900_bin"),
    }


def upgrade():
    schema = op.get_context().version_table_schema
    op.create_table(
        "role_stash_vendordata",
        sa.Column("id", BIG_ID, nullable=False, autoincrement=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("body", BODY, nullable=False),
        sa.Column("etag", sa.String(255), nullable=True),
        sa.Column("last_modified", sa.String(64), nullable=True),
        sa.Column("stored_at", TIMESTAMP, nullable=False),
        sa.Column("fresh_until", TIMESTAMP, nullable=True),
        sa.Column("stale_until", TIMESTAMP, nullable=True),
        sa.Column("keep_until", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="role_stash_vendordata_pkey"),
        sa.UniqueConstraint(
            "instance_uuid", "target",
            name="uniq_role_stash_vendordata0instance_uuid_target"),
        schema=schema, **mysql_table_args())
    op.create_index("role_stash_vendordata_keep_until_idx",
                    "role_stash_vendordata", ["keep_until"], schema=schema)


def downgrade():
    schema = op.get_context().version_table_schema
    op.drop_table("role_stash_vendordata", schema=schema)
