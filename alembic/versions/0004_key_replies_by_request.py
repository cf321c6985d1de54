"""Key cached vendordata replies by the request they answer.

role_stash_vendordata and its shadow gain request_digest: the SHA-256, in
hex, of the URL and the JSON body a reply was posted for. A reply is served
only to the same request; one cached before, without a digest, answers none
and is replaced at its instance's next metadata GET.

Revision ID: 0004_key_replies_by_request
Revises: 0003_create_shadow_tables
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0004_key_replies_by_request"
down_revision = "0003_create_shadow_tables"
branch_labels = None
depends_on = None

# A nullable column, added: the previous release's workers go on reading
# and writing the table (their replies, without a digest, answer no
# request of this release's).
phase = "expand"

TABLES = ("role_stash_vendordata", "role_stash_vendordata_shadow")


def upgrade():
    schema = op.get_context().version_table_schema
    for table in TABLES:
        op.add_column(table, sa.Column("request_digest", sa.String(64),
                                       nullable=True), schema=schema)


def downgrade():
    # SQLite drops a column itself (ALTER TABLE ... DROP COLUMN): no
    # batch copy of the table, which offline SQL could not write.
    schema = op.get_context().version_table_schema
    for table in TABLES:
        op.drop_column(table, "request_digest", schema=schema)
