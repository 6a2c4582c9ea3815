"""End users (wallet holders): sign-up, sign-in, second factors, sessions, devices, step-up.

- ``models``, ``repository``: the tables and every query.
- pure helpers, no I/O: ``identifiers``, ``passwords``, ``tokens``, ``totp``,
  ``recovery_codes``, ``passkeys`` (WebAuthn), ``signatures`` (device keys).
- services (flush, never commit): ``service`` (accounts, sign-in), ``sessions``, ``mfa``,
  ``devices``, ``step_up`` (``verify_step_up`` is what other domains call), ``lockout``.
- ``errors``, ``work`` (refusals whose trace outlives the rollback), ``events``.
- ``auth``, ``config``, ``schemas``, ``router``: the HTTP surface under ``/v1/users``,
  ``/v1/sessions`` and ``/v1/me``.
"""
