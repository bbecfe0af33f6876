"""The main job: starts the whole system on one Ray cluster (``run``, ``deploy up``) and feeds the demo."""
