"""The tamper-evident audit log: a hash chain per tenant (and one for the platform),
signed Merkle checkpoints, inclusion proofs and a verifier.

Other domains call :func:`billfold.audit.service.append` inside their own transaction.
This package imports only ``billfold.kit``.
"""
