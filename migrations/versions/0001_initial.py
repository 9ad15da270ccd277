"""Initial schema: sources, articles, chunks, embedding spaces, sync runs, answers, feedback, Slack
event dedupe, fine-tuning jobs and tone models.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE sources (
            id serial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            kind text NOT NULL,
            config jsonb NOT NULL DEFAULT '{}',
            checkpoint jsonb,
            last_success_at timestamptz,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE articles (
            id bigserial PRIMARY KEY,
            source_id int NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            external_id text NOT NULL,
            title text NOT NULL,
            url text,
            owner text,
            source_updated_at timestamptz,
            content_hash text NOT NULL,
            body text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}',
            indexed_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (source_id, external_id)
        );

        -- `context` is the title and heading path; the lexical index covers it with the text.
        CREATE TABLE chunks (
            id bigserial PRIMARY KEY,
            article_id bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            source_id int NOT NULL,
            ordinal int NOT NULL,
            heading_path text[] NOT NULL DEFAULT '{}',
            context text NOT NULL,
            text text NOT NULL,
            char_start int NOT NULL,
            char_end int NOT NULL,
            token_count int NOT NULL,
            content_hash text NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', context || ' ' || text)) STORED
        );
        CREATE INDEX chunks_article_idx ON chunks (article_id);
        CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);

        -- One row per embedding model the index has used. Vectors of different spaces never mix;
        -- exactly one space is active (answers search it) while a new one may be building.
        CREATE TABLE embedding_spaces (
            id serial PRIMARY KEY,
            provider text NOT NULL,
            model text NOT NULL,
            dimension int NOT NULL CHECK (dimension > 0),
            status text NOT NULL CHECK (status IN ('building', 'active', 'retired')),
            created_at timestamptz NOT NULL DEFAULT now(),
            activated_at timestamptz
        );
        CREATE UNIQUE INDEX embedding_spaces_one_active ON embedding_spaces ((true)) WHERE status = 'active';

        -- The HNSW index is per space (a partial expression index created by the code with the
        -- space's dimension), which is how pgvector indexes vectors of several dimensions in one table.
        CREATE TABLE embeddings (
            space_id int NOT NULL REFERENCES embedding_spaces(id) ON DELETE CASCADE,
            chunk_id bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            source_id int NOT NULL,
            embedding vector NOT NULL,
            PRIMARY KEY (space_id, chunk_id)
        );
        CREATE INDEX embeddings_chunk_idx ON embeddings (chunk_id);

        -- Lexicon statistics for BM25, refreshed after each sync that changed chunks.
        CREATE TABLE lexicon (
            lexeme text PRIMARY KEY,
            doc_freq int NOT NULL
        );
        CREATE TABLE lexicon_stats (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            doc_count bigint NOT NULL,
            avg_doc_len double precision NOT NULL,
            refreshed_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE sync_runs (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            trigger text NOT NULL,
            started_by text,
            sources text[] NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            added int NOT NULL DEFAULT 0,
            updated int NOT NULL DEFAULT 0,
            removed int NOT NULL DEFAULT 0,
            unchanged int NOT NULL DEFAULT 0,
            failed int NOT NULL DEFAULT 0,
            chunks_embedded int NOT NULL DEFAULT 0,
            errors jsonb NOT NULL DEFAULT '[]'
        );
        CREATE INDEX sync_runs_started_idx ON sync_runs (started_at DESC);

        CREATE TABLE answers (
            id bigserial PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            channel_kind text NOT NULL DEFAULT 'cli',
            asker text,
            channel text,
            thread_ts text,
            message_ts text,
            question text NOT NULL,
            rewritten_question text,
            answer_text text,
            outcome text NOT NULL CHECK (outcome IN ('answered', 'abstained', 'error')),
            model text,
            latency_ms jsonb NOT NULL DEFAULT '{}',
            error_id text,
            error text,
            metadata jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX answers_created_idx ON answers (created_at DESC);
        CREATE INDEX answers_thread_idx ON answers (channel, thread_ts);

        -- Citations keep the article's title/url so a review still reads after the article is deleted.
        CREATE TABLE answer_citations (
            answer_id bigint NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
            number int NOT NULL,
            chunk_id bigint REFERENCES chunks(id) ON DELETE SET NULL,
            article_id bigint REFERENCES articles(id) ON DELETE SET NULL,
            source text,
            external_id text,
            title text NOT NULL,
            url text,
            heading text,
            quote text,
            score double precision,
            similarity double precision,
            PRIMARY KEY (answer_id, number)
        );

        CREATE TABLE feedback (
            id bigserial PRIMARY KEY,
            answer_id bigint NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
            user_id text NOT NULL,
            value text NOT NULL CHECK (value IN ('up', 'down')),
            reason text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (answer_id, user_id)
        );

        -- Slack retries the same event up to 3 times; the first insert wins across all replicas.
        CREATE TABLE slack_events (
            event_id text PRIMARY KEY,
            received_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE finetune_jobs (
            job_id text PRIMARY KEY,
            base_model text NOT NULL,
            suffix text,
            status text NOT NULL,
            training_file_id text,
            validation_file_id text,
            manifest_sha256 text,
            fine_tuned_model text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            metadata jsonb NOT NULL DEFAULT '{}'
        );

        CREATE TABLE tone_models (
            id serial PRIMARY KEY,
            model_id text NOT NULL UNIQUE,
            base_model text,
            job_id text,
            is_active boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            activated_at timestamptz,
            notes text
        );
        CREATE UNIQUE INDEX tone_models_one_active ON tone_models ((true)) WHERE is_active;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS tone_models, finetune_jobs, slack_events, feedback, answer_citations, answers,
            sync_runs, lexicon_stats, lexicon, embeddings, embedding_spaces, chunks, articles, sources CASCADE;
        """
    )
