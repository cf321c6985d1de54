"""Create role_stash_vendordata: dynamic vendordata replies, cached.

Revision ID: 0002_create_vendordata_replies
Revises: 0001_create_role_stashes
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa

from role_stash.db import types

revision = "0002_create_vendordata_replies"
down_revision = "0001_create_role_stashes"
branch_labels = None
depends_on = None

phase = "expand"


def upgrade():
    op.create_table(
        "role_stash_vendordata",
        sa.Column("id", types.BigId, nullable=False, autoincrement=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("body", types.ReplyBody, nullable=False),
        sa.Column("etag", sa.String(255), nullable=True),
        sa.Column("last_modified", sa.String(64), nullable=True),
        sa.Column("stored_at", types.Timestamp, nullable=False),
        sa.Column("fresh_until", types.Timestamp, nullable=True),
        sa.Column("stale_until", types.Timestamp, nullable=True),
        sa.Column("keep_until", types.Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="role_stash_vendordata_pkey"),
        sa.UniqueConstraint(
            "instance_uuid", "target",
            name="uniq_role_stash_vendordata0instance_uuid_target"),
        **types.migration_mysql_table_args(op.get_context()))
    op.create_index("role_stash_vendordata_keep_until_idx",
                    "role_stash_vendordata", ["keep_until"])


def downgrade():
    op.drop_table("role_stash_vendordata")
