"""Operators: the people in a tenant's back office, their roles and four-eyes approvals.

- ``permissions``: the roles, the permissions and the matrix between them.
- ``types``, ``errors``: the signed-in operator and the actor; typed errors.
- ``models``, ``repository``: operators, their sessions, approval requests, recorded changes.
- ``passwords``, ``tokens``: Argon2id passwords and ``bfo_…`` session tokens.
- ``payloads``: what each kind of approval request carries.
- ``service``: operators and sessions; ``approvals``: approval requests (both never commit).
- ``executors``: what runs when a request is approved, behind a small registry.
- ``flows``: deciding a request over a unit of work (claim, execute, record the outcome).
- ``auth``, ``schemas``, ``router``: the HTTP surface under ``/v1/operators``, ``/v1/approvals``.
"""
