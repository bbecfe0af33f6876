"""The REST front: the FastAPI app, its routes, and the Ray Serve deployment that serves it."""
