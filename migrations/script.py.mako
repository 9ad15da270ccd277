"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None

# Can code of the previous revision still run on the schema this leaves? A new table or column it never
# reads: True. A column or table it reads dropped, renamed or retyped: False, and the release notes say
# to stop old processes before rolling out (docs/operations.md, "Upgrading").
compatible_with_previous = False


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
