"""A stand-in ("twin") for AWS CloudHSM's ``cloudhsm-cli`` in single-command mode, with real
crypto: each cluster is a SoftHSM token plus the stand-in's own state (users, owners, sharing,
quorum values, trusted flags) in SQLite beside it, and every rule CloudHSM documents for the
commands keyparity and the migration guide use is enforced, citing its page (rules.py).

Entry points: ``cloudhsm-cli`` (this folder; or the per-client copy that provisioning writes
into ``<root>/clients/<name>/bin``) and ``python -m cloudhsm_twin provision-demo ROOT`` (from
tests/helpers/). docs/design.md, "The CloudHSM stand-in", says what it models and where it differs.
"""
