"""Tenants, API keys and the authentication every route depends on."""
