"""The ``treasury-orch`` command: parsing in ``main``, one module per family of commands."""

from serve_app.cli.main import main

__all__ = ["main"]
