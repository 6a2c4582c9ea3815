"""Payments: payment objects and their state machines, refunds, disputes, splits, fees."""
