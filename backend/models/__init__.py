"""Model loading: bundled GGUF base models, local folders, cached hub ids, tiny test models."""

from backend.models.loading import ModelNotFoundError, load_model, load_tokenizer, resolve_model

__all__ = ["ModelNotFoundError", "load_model", "load_tokenizer", "resolve_model"]
