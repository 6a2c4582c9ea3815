"""The double-entry ledger: accounts, immutable transfers, two-phase, batching, verification.

TigerBeetle's data model on SQL. Only this package writes ledger tables; it imports only
`billfold.kit`.
"""
