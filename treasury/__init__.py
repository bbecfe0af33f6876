"""The small shared kernel: settings, money and clock helpers, ids, logging."""
