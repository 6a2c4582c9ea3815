"""Real-time risk: features, CEL rules, models, decisions, review cases, automated responses.

Every money movement is described as a `billfold.risk.types.Movement` and decided before it
reaches the ledger (see ``types`` for the vocabulary and the protocols).
"""
