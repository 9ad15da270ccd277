# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""Jobs through the real openai client against the local fake OpenAI API over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from finetune.builder import BuildOptions
from finetune.errors import JobError, ManifestError
from finetune.jobs import FineTuningJobs, client_from_settings
from finetune.prepare import PrepareRequest, prepare
from retrieval.settings import OpenAISettings
from tests.fakes.openai_api import FakeOpenAI, Scripted, fake_openai  # noqa: F401 - fixture

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    out = tmp_path / "data"
    prepare(
        PrepareRequest(
            inputs=[FIXTURES / "transcripts.csv", FIXTURES / "chats.jsonl"],
            out_dir=out,
            options=BuildOptions(validation_fraction=0.3),
        )
    )
    return out


def _jobs(fake: FakeOpenAI, **options: object) -> FineTuningJobs:
    options = {"max_retries": 2, **options}
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", **options)  # type: ignore[arg-type]
    return FineTuningJobs(client)


def test_submit_uploads_both_files_and_creates_the_job(fake_openai: FakeOpenAI, prepared: Path) -> None:
    submission = _jobs(fake_openai).submit(
        prepared / "train.jsonl",
        prepared / "validation.jsonl",
        base_model="gpt-4o-mini",
        suffix="tone",
        epochs=3,
        seed=7,
    )
    uploads = fake_openai.requests_to("POST", "/v1/files")
    assert [u.form["purpose"] for u in uploads] == ["fine-tune", "fine-tune"]
    assert uploads[0].files["file"] == ("train.jsonl", (prepared / "train.jsonl").read_bytes())
    create = fake_openai.requests_to("POST", "/v1/fine_tuning/jobs")[0].json
    assert create["model"] == "gpt-4o-mini" and create["suffix"] == "tone" and create["seed"] == 7
    assert create["hyperparameters"] == {"n_epochs": 3}
    assert create["training_file"] != create["validation_file"]
    assert submission.job.status == "validating_files"
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert submission.manifest_sha256 == manifest["files"]["train.jsonl"]["sha256"]
    assert fake_openai.requests[0].headers["authorization"] == "Bearer test"


def test_submit_refuses_files_without_a_matching_manifest(
    fake_openai: FakeOpenAI, prepared: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"messages": [{"role": "user", "content": "Priya, 4111 1111 1111 1111"}]}\n')
    with pytest.raises(ManifestError, match="sanitized"):
        _jobs(fake_openai).submit(raw, None, base_model="gpt-4o-mini")
    (prepared / "validation.jsonl").write_text("edited\n")
    with pytest.raises(ManifestError, match="changed after"):
        _jobs(fake_openai).submit(
            prepared / "train.jsonl", prepared / "validation.jsonl", base_model="gpt-4o-mini"
        )
    assert fake_openai.requests == []  # nothing left the machine
    forced = _jobs(fake_openai).submit(raw, None, base_model="gpt-4o-mini", force=True)
    assert forced.manifest_sha256 is None


def test_status_events_and_wait_follow_the_job_to_success(fake_openai: FakeOpenAI, prepared: Path) -> None:
    jobs = _jobs(fake_openai)
    job = jobs.submit(prepared / "train.jsonl", None, base_model="gpt-4o-mini", suffix="tone").job
    seen: list[str] = []
    final = jobs.wait(job.job_id, poll_s=0, on_event=lambda e: seen.append(e.message), sleep=lambda _: None)
    assert final.status == "succeeded"
    assert final.fine_tuned_model and final.fine_tuned_model.startswith("ft:gpt-4o-mini:kbbot:tone:")
    assert seen[0].startswith("Validating training file") and seen[-1] == "The job has successfully completed"
    assert len(seen) == len(set(seen))  # each event reported once
    assert jobs.status(job.job_id).status == "succeeded"
    assert [j.job_id for j in jobs.list_jobs()] == [job.job_id]


def test_wait_reports_a_failed_job_and_times_out(fake_openai: FakeOpenAI, prepared: Path) -> None:
    fake_openai.fail_jobs_with = ("invalid_training_file", "Training file has too few examples")
    jobs = _jobs(fake_openai)
    job = jobs.submit(prepared / "train.jsonl", None, base_model="gpt-4o-mini").job
    final = jobs.wait(job.job_id, poll_s=0, sleep=lambda _: None)
    assert final.status == "failed" and final.error == "Training file has too few examples"
    fake_openai.polls_per_status = 1000
    slow = jobs.submit(prepared / "train.jsonl", None, base_model="gpt-4o-mini").job
    with pytest.raises(JobError, match="still validating_files"):
        jobs.wait(slow.job_id, poll_s=0, timeout_s=0, sleep=lambda _: None)


def test_rate_limits_and_server_errors_are_retried(fake_openai: FakeOpenAI, prepared: Path) -> None:
    jobs = _jobs(fake_openai)
    job = jobs.submit(prepared / "train.jsonl", None, base_model="gpt-4o-mini").job
    fake_openai.script(
        "GET", r"/v1/fine_tuning/jobs/[^/]+", Scripted.error(429, retry_after=0), Scripted.error(500)
    )
    assert jobs.status(job.job_id).job_id == job.job_id
    assert len(fake_openai.requests_to("GET", r"/v1/fine_tuning/jobs/[^/]+")) == 3


@pytest.mark.parametrize(
    ("scripted", "message"),
    [
        (Scripted.error(401, "Incorrect API key provided"), "refused the API key"),
        (Scripted.error(429, retry_after=0), "rate-limited"),
        (Scripted.error(404, "Could not find fine tune job", code="fine_tune_not_found"), "not found"),
        (
            Scripted.error(400, "Model x is not available", code="model_not_available"),
            "Model x is not available",
        ),
        (Scripted.error(503, "overloaded"), r"failed \(503\)"),
    ],
)
def test_api_errors_become_job_errors(fake_openai: FakeOpenAI, scripted: Scripted, message: str) -> None:
    fake_openai.script("GET", r"/v1/fine_tuning/jobs/.*", scripted)
    with pytest.raises(JobError, match=message) as caught:
        _jobs(fake_openai, max_retries=0).status("ftjob-1")
    assert "test" not in str(caught.value).split("API key")[-1]  # the key never shows


def test_timeouts_and_unreachable_api(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("GET", r"/v1/fine_tuning/jobs/.*", Scripted(delay_s=1.0))
    with pytest.raises(JobError, match="no reply from"):
        _jobs(fake_openai, timeout=0.2, max_retries=0).status("ftjob-1")
    dead = FineTuningJobs(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="test", max_retries=0))
    with pytest.raises(JobError, match="cannot reach"):
        dead.status("ftjob-1")


def test_client_from_settings_needs_a_key() -> None:
    with pytest.raises(JobError, match="OPENAI_API_KEY"):
        client_from_settings(OpenAISettings(_env_file=None))
    client = client_from_settings(OpenAISettings(_env_file=None, OPENAI_API_KEY="sk-test",
                                                 OPENAI_BASE_URL="http://127.0.0.1:1/v1"))
    assert str(client.base_url).startswith("http://127.0.0.1:1/v1")
