"""The gaps report's core on a real PostgreSQL with the demo KB and the real embedding model: which questions
are gaps, how they group and rank, the question-vector cache, the viewer's limits, articles to review, and
the clustering quality on the labelled set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text

from retrieval.answer import AnswerPipeline
from retrieval.answer_log import AnswerLog, Asked
from retrieval.db import Database
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.gaps import GapFinder, Viewer, cluster_labels, nearest_from_searcher
from retrieval.gaps_articles import articles_to_review
from retrieval.gaps_eval import LabelledQuestions, scores
from retrieval.search import Searcher

LABELLED = Path(__file__).resolve().parents[1] / "demo_eval" / "gaps_questions.jsonl"
DOG = ["Can I bring my dog to the office?", "Are pets allowed in the Lisbon office?",
       "is it ok to bring my puppy to work with me"]
GYM = ["Does Northwind pay for a gym membership?", "Can I get my gym subscription reimbursed?"]


def _log(db: Database, embedder, entries: list[tuple[str, str]]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Ask each (asker, question) through the real pipeline and log it; returns question -> answer id."""
    pipeline = AnswerPipeline(Searcher(db, embedder), ExtractiveSynthesizer(embedder), min_relevance=0.4)
    log = AnswerLog(db)
    return {q: log.record(Asked(q, "channel", asker, "C0IT", "1.1"), pipeline.answer(q)) for asker, q in entries}


def _finder(db: Database, embedder) -> GapFinder:  # type: ignore[no-untyped-def]
    return GapFinder(db, embedder)


def test_gaps_group_by_meaning_and_rank_by_people_and_recency(demo_database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    ids = _log(demo_database, embedder, [
        ("U1", DOG[0]), ("U2", DOG[1]), ("U3", DOG[2]), ("U1", GYM[0]), ("U4", GYM[1]),
        ("U5", "How do I connect to the VPN when I work from home?"),  # answered, nobody complained: no gap
        ("U6", "How do I request time off?"),
    ])
    log = AnswerLog(demo_database)
    log.record_feedback(ids["How do I request time off?"], "U6", "down", "The article is out of date")
    for q in GYM:  # answered or not, each asker pressed "Ask a human"
        log.add_metadata(ids[q], {"escalated_by": "U4"})
    with demo_database.engine.begin() as conn:  # the gym questions were asked three weeks ago
        conn.execute(text("UPDATE answers SET created_at = now() - interval '21 days' WHERE id = ANY(:ids)"),
                     {"ids": [ids[q] for q in GYM]})

    searcher = Searcher(demo_database, embedder)
    report = _finder(demo_database, embedder).report(
        since=datetime.now(UTC) - timedelta(days=30),
        nearest=lambda q, v, scope: searcher.search_vector(q, v, k=10, audience=scope).hits)
    groups = {g.representative: g for g in report.groups}
    assert report.gap_questions == 6 and report.embedded == 6 and not report.truncated
    dog = next(g for g in report.groups if set(q.question for q in g.questions) == set(DOG))
    gym = next(g for g in report.groups if set(q.question for q in g.questions) == set(GYM))
    assert report.groups[0] is dog  # three people, today, beat two people three weeks ago
    assert dog.people == 3 and dog.abstained == 3 and dog.representative in DOG and dog.nearest
    assert gym.escalated == 2 and gym.score < dog.score
    pto = next(g for g in groups.values() if g.down_voted)
    assert pto.reasons == ["The article is out of date"] and pto.cited and pto.answer_sample
    assert pto.questions[0].down_votes[0].category == "outdated"  # classified from the free text

    # The vectors are cached: a second report embeds nothing; a viewer who may read nothing sees no
    # group that names an article (gym and time off were answered; the dog questions cite none and stay).
    again = _finder(demo_database, embedder).report(since=datetime.now(UTC) - timedelta(days=30),
                                                    viewer=Viewer(visible=lambda ids: set()))
    assert again.embedded == 0
    assert again.hidden_groups == 2 and again.groups and all(not g.cited for g in again.groups)

    # Audiences (retrieval/access.py): the time-off article is restricted to HR; a member outside HR does
    # not see the group that cites it, nor that article among the nearest ones; an HR member does.
    from retrieval.access import ReaderScope

    cited = pto.cited[0].article_id
    with demo_database.engine.begin() as conn:
        for table, key in (("articles", "id"), ("chunks", "article_id")):
            conn.execute(text(f"UPDATE {table} SET audience = '{{S0HR}}' WHERE {key} = :a"), {"a": cited})
        conn.execute(text("UPDATE embeddings SET audience = '{S0HR}' WHERE chunk_id IN "
                          "(SELECT id FROM chunks WHERE article_id = :a)"), {"a": cited})
    lookup = nearest_from_searcher(searcher)
    since = datetime.now(UTC) - timedelta(days=30)
    outsider = _finder(demo_database, embedder).report(
        since=since, nearest=lookup, viewer=Viewer.for_scope(demo_database, ReaderScope.member([], "test")))
    assert outsider.hidden_groups == 1 and not any(g.representative == pto.representative for g in outsider.groups)
    assert all(n.article_id != cited for g in outsider.groups for n in g.nearest)
    hr = _finder(demo_database, embedder).report(
        since=since, nearest=lookup, viewer=Viewer.for_scope(demo_database, ReaderScope.member(["S0HR"], "test")))
    assert hr.hidden_groups == 0 and any(g.representative == pto.representative for g in hr.groups)
    member_only = Viewer.for_scope(demo_database, ReaderScope.member([], "test")).visible
    listed = articles_to_review(demo_database, since=since, stale_after_days=1, min_citations=1, visible=member_only)
    assert listed and all(a.article_id != cited for a in listed)


def test_articles_to_review_rank_by_citations_times_down_rate(demo_database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    question = "How many vacation days can I carry over?"
    ids = _log(demo_database, embedder, [(f"U{i}", question) for i in range(4)])
    log = AnswerLog(demo_database)
    answer_ids = list(ids.values())  # one id: same text, the dict kept the last
    with demo_database.engine.connect() as conn:
        all_ids = conn.execute(text("SELECT id FROM answers ORDER BY id")).scalars().all()
    log.record_feedback(all_ids[0], "U0", "down", "wrong number of days", category="wrong")
    log.record_feedback(all_ids[1], "U1", "up")
    assert answer_ids
    listed = articles_to_review(demo_database, since=datetime.now(UTC) - timedelta(days=1), stale_after_days=365)
    top = listed[0]
    assert top.kinds["wrong"] == 1 and top.down_rate == 0.5 and top.citations == 4 and top.score == 2.0
    assert "1 × wrong" in top.why and top.url
    assert articles_to_review(demo_database, since=datetime.now(UTC) - timedelta(days=1), stale_after_days=365,
                              visible=lambda ids: set()) == []


def test_clustering_quality_on_the_labelled_set(embedder) -> None:  # type: ignore[no-untyped-def]
    data = LabelledQuestions.read(LABELLED)
    assert len(data.texts) >= 300 and sum(1 for g in data.groups if g.startswith("solo-")) >= 50
    vectors = np.asarray(embedder.embed_documents(data.texts), dtype=np.float32)
    measured = scores(data.groups, vectors, 0.55)
    # Measured 0.506 ARI and 0.868 purity (BENCHMARKS.md, bench/gaps_clustering.py); a small margin for
    # numeric noise across BLAS builds.
    assert measured["adjusted_rand_index"] >= 0.48 and measured["purity"] >= 0.84, measured

    # The same partition as scikit-learn's AgglomerativeClustering (which runs SciPy's linkage underneath).
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0).astype(np.float64)
    np.fill_diagonal(distances, 0.0)
    reference = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                        distance_threshold=0.55).fit_predict(distances)
    assert adjusted_rand_score(reference, cluster_labels(vectors, 0.55)) == 1.0


def test_cluster_labels_handle_tiny_inputs() -> None:
    assert cluster_labels(np.zeros((0, 4), dtype=np.float32)).tolist() == []
    assert cluster_labels(np.ones((1, 4), dtype=np.float32)).tolist() == [0]
    two = cluster_labels(np.array([[1, 0, 0], [0.99, 0.05, 0], [0, 0, 1]], dtype=np.float32))
    assert two[0] == two[1] != two[2]


def test_the_worker_schedules_the_digest_and_every_worker_agrees_on_its_slot(make_settings) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    import pytest
    from apscheduler.triggers.cron import CronTrigger

    from bot.gaps_digest import last_fire_time
    from bot.services import Services
    from bot.worker import DIGEST_JOB, SyncScheduler
    from retrieval.errors import ConfigError

    quiet = {"sync_interval_minutes": 0, "full_sync_cron": ""}
    settings = make_settings(gaps_digest_channel="C0KB", slack_bot_token="xoxb-test", **quiet)
    jobs = {j.id: j for j in SyncScheduler.of(Services(settings), run_at_start=False).scheduler.get_jobs()}
    assert set(jobs) == {DIGEST_JOB}
    first = jobs[DIGEST_JOB].trigger.get_next_fire_time(None, datetime(2026, 12, 1, tzinfo=UTC))  # a Tuesday
    assert first == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # crontab's 1 is Monday (APScheduler's would be Tuesday)
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        SyncScheduler.of(Services(make_settings(gaps_digest_channel="C0KB", **quiet)))
    with pytest.raises(ConfigError, match="KBBOT_GAPS_DIGEST_CRON"):
        SyncScheduler.of(Services(make_settings(gaps_digest_channel="C0KB", slack_bot_token="xoxb-test",
                                             gaps_digest_cron="every monday", **quiet)))

    tz = ZoneInfo("Europe/Lisbon")
    weekly = CronTrigger.from_crontab("0 9 * * mon", timezone=tz)
    on_time = datetime(2026, 12, 7, 9, 0, 0, tzinfo=tz)  # a Monday
    late = datetime(2026, 12, 7, 9, 4, 30, tzinfo=tz)
    assert last_fire_time(weekly, on_time) == last_fire_time(weekly, late) == on_time
    assert last_fire_time(weekly, datetime(2026, 12, 9, 15, 0, tzinfo=tz)) == on_time
