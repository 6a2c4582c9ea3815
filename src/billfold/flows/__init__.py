"""Orchestration across domains: the one place a domain's work reaches into another's.

A domain never imports another domain's internals; a flow may import several domains'
public facades and connect them (``approvals``: identity's four-eyes approvals executed on
the ledger). The application wires flows in at startup.
"""
