"""Fees: schedules per tenant and merchant, and the engine that explains every fee charged."""
