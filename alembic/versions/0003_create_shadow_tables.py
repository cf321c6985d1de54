"""Create the shadow tables, where archive moves deleted rows.

role_stashes_shadow, role_stash_roles_shadow and role_stash_vendordata_shadow
take the columns of their live tables, without unique constraints or
foreign keys, and with the indexes that purge finds old rows by.

Revision ID: 0003_create_shadow_tables
Revises: 0002_create_vendordata_replies
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

from role_stash.db import types

revision = "0003_create_shadow_tables"
down_revision = "0002_create_vendordata_replies"
branch_labels = None
depends_on = None

phase = "expand"


def upgrade():
    schema = op.get_context().version_table_schema
    mysql_args = types.migration_mysql_table_args(op.get_context())
    op.create_table(
        "role_stashes_shadow",
        # The stash's id in role_stashes, which its archived roles name.
        sa.Column("id", types.BigId, nullable=False, autoincrement=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("project_domain_id", sa.String(255), nullable=True),
        sa.Column("user_domain_id", sa.String(255), nullable=True),
        sa.Column("created_at", types.Timestamp, nullable=False),
        sa.Column("updated_at", types.Timestamp, nullable=True),
        sa.Column("deleted_at", types.Timestamp, nullable=True),
        sa.Column("deleted", sa.Integer, nullable=False,
                  server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="role_stashes_shadow_pkey"),
        schema=schema, **mysql_args)
    # Purge takes the oldest first, in this order, a batch at a time: the
    # index gives them in it, however many share a deleted_at.
    op.create_index("role_stashes_shadow_deleted_at_id_idx",
                    "role_stashes_shadow", ["deleted_at", "id"],
                    schema=schema)
    op.create_table(
        "role_stash_roles_shadow",
        sa.Column("stash_id", types.BigId, nullable=False,
                  autoincrement=False),
        sa.Column("position", sa.Integer, nullable=False,
                  autoincrement=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint(
            "stash_id", "position", name="role_stash_roles_shadow_pkey"),
        schema=schema, **mysql_args)
    op.create_table(
        "role_stash_vendordata_shadow",
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
        sa.PrimaryKeyConstraint("id",
                                name="role_stash_vendordata_shadow_pkey"),
        schema=schema, **mysql_args)
    op.create_index("role_stash_vendordata_shadow_keep_until_id_idx",
                    "role_stash_vendordata_shadow", ["keep_until", "id"],
                    schema=schema)


def downgrade():
    schema = op.get_context().version_table_schema
    # The archived rows go with their tables.
    op.drop_table("role_stash_vendordata_shadow", schema=schema)
    op.drop_table("role_stash_roles_shadow", schema=schema)
    op.drop_table("role_stashes_shadow", schema=schema)
