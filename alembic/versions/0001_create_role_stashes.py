"""Create role_stashes and role_stash_roles.

Revision ID: 0001_create_role_stashes
Revises:
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa

from role_stash.db import types

revision = "0001_create_role_stashes"
down_revision = None
branch_labels = None
depends_on = None

phase = "expand"


def upgrade():
    mysql_args = types.migration_mysql_table_args(op.get_context())
    op.create_table(
        "role_stashes",
        sa.Column("id", types.BigId, nullable=False,
                  autoincrement=True),
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
        sa.PrimaryKeyConstraint("id", name="role_stashes_pkey"),
        sa.UniqueConstraint(
            "instance_uuid", "deleted",
            name="uniq_role_stashes0instance_uuid_deleted"),
        **mysql_args)
    op.create_index("role_stashes_project_id_deleted_id_idx", "role_stashes",
                    ["project_id", "deleted", "id"])
    op.create_index("role_stashes_deleted_at_idx", "role_stashes",
                    ["deleted_at"])
    op.create_table(
        "role_stash_roles",
        sa.Column("stash_id", types.BigId, nullable=False),
        sa.Column("position", sa.Integer, nullable=False,
                  autoincrement=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint(
            "stash_id", "position", name="role_stash_roles_pkey"),
        sa.ForeignKeyConstraint(
            ["stash_id"], ["role_stashes.id"],
            name="role_stash_roles_stash_id_fkey", ondelete="CASCADE"),
        sa.UniqueConstraint(
            "stash_id", "name", name="uniq_role_stash_roles0stash_id_name"),
        **mysql_args)
    op.create_index("role_stash_roles_name_stash_id_idx", "role_stash_roles",
                    ["name", "stash_id"])


def downgrade():
    op.drop_table("role_stash_roles")
    op.drop_table("role_stashes")
