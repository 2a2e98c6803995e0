"""emotional_chat backend: models, settings and database operations."""
