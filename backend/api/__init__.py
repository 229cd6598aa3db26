"""The HTTP service (FastAPI). Only this package imports the web framework."""
