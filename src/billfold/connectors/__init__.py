"""Connectors: the provider protocol, sandbox card and bank providers, signed notifications."""
