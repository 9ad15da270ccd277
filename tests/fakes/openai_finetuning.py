"""The fake OpenAI API's files and fine-tuning endpoints (a mixin of ``FakeOpenAI``, which holds the state:
``files``, ``file_contents``, ``jobs``, ``_events``, ``_polls``, ``_lock``, ``models`` and the job settings)."""

from __future__ import annotations

import re
import time
from email.parser import BytesParser
from email.policy import HTTP

from tests.fakes.openai_protocol import JSON, Recorded, Reply, _error_body

_JOB_STATUSES = ("validating_files", "running", "succeeded")


class FineTuningEndpoints:
    # --- files -----------------------------------------------------------------------------------
    def _handle_upload_file(self, request: Recorded, _: re.Match[str]) -> Reply:
        if request.form.get("purpose") not in {"fine-tune", "batch", "assistants", "user_data", "evals"}:
            return Reply(400, _error_body("Invalid purpose.", "invalid_request_error", None, "purpose"))
        if "file" not in request.files:
            return Reply(400, _error_body("Missing file.", "invalid_request_error", None, "file"))
        filename, content = request.files["file"]
        file_id = self._next_id("file")
        self.file_contents[file_id] = content
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": request.form["purpose"],
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        return Reply(200, self.files[file_id])

    def _handle_get_file(self, _: Recorded, match: re.Match[str]) -> Reply:
        file = self.files.get(match["file_id"])
        if file is None:
            return Reply(
                404,
                _error_body(f"No such File object: {match['file_id']}", "invalid_request_error", None, "id"),
            )
        return Reply(200, file)

    # --- fine-tuning jobs ------------------------------------------------------------------------
    def _event(self, job_id: str, message: str, level: str = "info", data: JSON | None = None) -> None:
        self._events.setdefault(job_id, []).append(
            {
                "object": "fine_tuning.job.event",
                "id": self._next_id("ftevent"),
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data or {},
                "type": "metrics" if data else "message",
            }
        )

    def _handle_create_job(self, request: Recorded, _: re.Match[str]) -> Reply:
        body = request.json or {}
        model, training_file = body.get("model"), body.get("training_file")
        if model not in self.models:
            return Reply(
                400,
                _error_body(
                    f"Model {model} is not available for fine-tuning or does not exist.",
                    "invalid_request_error",
                    "model_not_available",
                    "model",
                ),
            )
        for key in ("training_file", "validation_file"):
            if body.get(key) is not None and body[key] not in self.files:
                return Reply(
                    400,
                    _error_body(f"invalid {key}: {body[key]}", "invalid_request_error", "invalid_file", key),
                )
        if training_file is None:
            return Reply(
                400, _error_body("Missing training_file.", "invalid_request_error", None, "training_file")
            )
        job_id = self._next_id("ftjob")
        hyper = (
            body.get("hyperparameters")
            or (body.get("method") or {}).get("supervised", {}).get("hyperparameters")
            or {}
        )
        self.jobs[job_id] = {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": model,
            "created_at": int(time.time()),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-fake",
            "result_files": [],
            "status": "validating_files",
            "validation_file": body.get("validation_file"),
            "training_file": training_file,
            "trained_tokens": None,
            "error": None,
            "seed": body.get("seed", 42),
            "estimated_finish": None,
            "integrations": [],
            "metadata": body.get("metadata"),
            "user_provided_suffix": body.get("suffix"),
            "hyperparameters": {
                "n_epochs": hyper.get("n_epochs", "auto"),
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
            },
            "method": {"type": "supervised"},
        }
        self._polls[job_id] = 0
        self._event(job_id, f"Validating training file: {training_file}")
        return Reply(200, self.jobs[job_id])

    def _advance(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job["status"] not in _JOB_STATUSES[:-1]:
            return
        self._polls[job_id] += 1
        if self._polls[job_id] < self.polls_per_status:
            return
        self._polls[job_id] = 0
        if job["status"] == "validating_files":
            job["status"] = "running"
            self._event(job_id, "Files validated, moving job to queued state")
            self._event(job_id, "Fine-tuning job started")
            self._event(job_id, "Step 1/2: training loss=1.23", data={"step": 1, "train_loss": 1.23})
            return
        job["finished_at"] = int(time.time())
        if self.fail_jobs_with:
            code, message = self.fail_jobs_with
            job.update(status="failed", error={"code": code, "message": message, "param": None})
            self._event(job_id, f"Fine-tuning job failed: {message}", level="error")
            return
        suffix = job["user_provided_suffix"] or "custom"
        job.update(
            status="succeeded",
            trained_tokens=12345,
            fine_tuned_model=f"ft:{job['model']}:kbbot:{suffix}:{job_id[-6:]}",
        )
        self.models.add(job["fine_tuned_model"])
        self._event(job_id, "Step 2/2: training loss=0.61", data={"step": 2, "train_loss": 0.61})
        self._event(job_id, f"New fine-tuned model created: {job['fine_tuned_model']}")
        self._event(job_id, "The job has successfully completed")

    def _handle_get_job(self, _: Recorded, match: re.Match[str]) -> Reply:
        job_id = match["job_id"]
        if job_id not in self.jobs:
            return _job_not_found(job_id)
        self._advance(job_id)
        return Reply(200, self.jobs[job_id])

    @staticmethod
    def _page(items: list[JSON], request: Recorded) -> JSON:
        limit = int(request.query.get("limit", ["20"])[0])
        after = request.query.get("after", [None])[0]
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    def _handle_list_jobs(self, request: Recorded, _: re.Match[str]) -> Reply:
        return Reply(200, self._page(list(reversed(self.jobs.values())), request))

    def _handle_list_events(self, request: Recorded, match: re.Match[str]) -> Reply:
        job_id = match["job_id"]
        if job_id not in self.jobs:
            return _job_not_found(job_id)
        return Reply(200, self._page(list(reversed(self._events.get(job_id, []))), request))


def _parse_multipart(content_type: str, body: bytes, request: Recorded) -> None:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            request.files[str(name)] = (filename, payload)
        else:
            request.form[str(name)] = payload.decode("utf-8")



def _job_not_found(job_id: str) -> Reply:
    """OpenAI's 404 for an unknown fine-tuning job id."""
    return Reply(404, _error_body(f"Could not find fine tune job: {job_id}", "invalid_request_error",
                                  "fine_tune_not_found", "fine_tune_id"))
