"""tunebridge backend: training core, model loading, inference, and (later) the service."""
