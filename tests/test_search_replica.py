"""KBBOT_SEARCH_DATABASE_URL: searches read a streaming replica, everything else writes to the primary.
The replica is a real hot standby of the embedded PostgreSQL (pg_basebackup + a second postmaster)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bot.services import Services
from retrieval.sources import FilesystemSource
from tests.helpers import write_article
from tests.pg_standby import standby_of, wait_for_replay


def test_searches_read_the_replica_and_writes_stay_on_the_primary(demo_database, make_settings,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    primary = demo_database.engine.url
    with standby_of(primary, tmp_path / "replica") as replica_url:
        settings = make_settings(
            database_url=primary.render_as_string(hide_password=False),
            search_database_url=replica_url.set(drivername="postgresql").render_as_string(hide_password=False),
        )
        services = Services(settings)
        try:
            with services.search_database().engine.connect() as conn:
                assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
            with services.database().engine.connect() as conn:
                assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False

            searcher = services.searcher()
            assert searcher.db is services.search_database()
            assert searcher.search("how do I connect to the VPN", k=3).hits[0].external_id == "it/vpn.md"

            # A sync writes on the primary (the replica would refuse it); once replayed, the replica finds it.
            kb = tmp_path / "eng"
            write_article(kb, "bastion.md", "Bastion access", "## Hardware keys\nEngineers reach the bastion "
                          "host with a YubiKey enrolled at the service desk.\n")
            run = services.indexer().sync([FilesystemSource("eng", kb)])
            assert run.status == "succeeded" and run.added == 1
            wait_for_replay(primary, replica_url)
            hits = searcher.search("YubiKey for the bastion host", k=3, sources=["eng"]).hits
            assert hits and hits[0].external_id == "bastion.md"
        finally:
            services.close()
