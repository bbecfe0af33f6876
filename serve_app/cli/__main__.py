"""``python -m serve_app.cli``: the same command as the ``treasury-orch`` entry point."""

import sys

from serve_app.cli.main import main

sys.exit(main())
