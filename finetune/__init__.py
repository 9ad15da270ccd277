"""Fine-tuning a support-tone model: chat-log readers, PII sanitizer, dataset builder and validator,
fine-tuning jobs, the tone-model registry and evaluation. See docs/finetune.md."""
