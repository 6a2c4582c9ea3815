"""Wallets: one ledger account per owner and currency, the tenant's chart of system accounts,
merchants, and limits by KYC tier."""
