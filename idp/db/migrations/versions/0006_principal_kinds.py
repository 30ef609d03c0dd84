"""kinds of principal: accounts and login sessions say whether they are a citizen's or staff's

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every row before this revision is a citizen's: the server default says so.
    for table in ("accounts", "login_sessions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("kind", sa.String(length=16), server_default="citizen", nullable=False)
            )


def downgrade() -> None:
    for table in ("login_sessions", "accounts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("kind")
