"""The demo bank: a Bank-Connector counterpart for `treasury-orch run` (docs/demo.md)."""
