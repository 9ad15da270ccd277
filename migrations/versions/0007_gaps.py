"""Knowledge gaps (retrieval/gaps.py): question vectors, experts' replies, 👎 categories, digests.

- `question_vectors` caches the embedding of each question the gaps report clusters, per embedding model
  (a model change re-embeds lazily; vectors of two models are never compared).
- `expert_replies` keeps the first reply of a support-group member in a thread after "Ask a human", and
  whether a reviewer accepted it as the answer (and where it was exported as a draft article).
- `feedback.category` is the kind of 👎 picked in the reason modal (wrong, outdated, incomplete,
  off_topic, other); NULL for older votes, whose free-text reason is read instead.
- `gaps_digests` has one row per scheduled digest slot: the unique slot makes the weekly post happen once
  however many workers run the schedule.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS question_vectors (
            answer_id bigint PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
            model text NOT NULL,
            embedding vector NOT NULL
        );

        CREATE TABLE IF NOT EXISTS expert_replies (
            id bigserial PRIMARY KEY,
            answer_id bigint NOT NULL UNIQUE REFERENCES answers(id) ON DELETE CASCADE,
            channel text NOT NULL,
            thread_ts text NOT NULL,
            message_ts text NOT NULL,
            user_id text NOT NULL,
            text text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            accepted_by text,
            accepted_at timestamptz,
            exported_at timestamptz,
            exported_to text
        );

        ALTER TABLE feedback ADD COLUMN IF NOT EXISTS category text;

        CREATE TABLE IF NOT EXISTS gaps_digests (
            slot text PRIMARY KEY,
            channel text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            message_ts text,
            error text
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS gaps_digests;
        ALTER TABLE feedback DROP COLUMN IF EXISTS category;
        DROP TABLE IF EXISTS expert_replies;
        DROP TABLE IF EXISTS question_vectors;
        """
    )
