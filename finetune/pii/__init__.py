"""PII detection and redaction for chat logs: see ``sanitizer.Sanitizer``."""
