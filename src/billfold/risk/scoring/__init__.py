"""Risk models: a supervised online model (P(fraud), learning from labels) and an
unsupervised anomaly detector (for tenants with no labels yet), versioned, promoted by
operators, served to the engine from memory, and watched for drift.

For the engine::

    registry = model_registry_from_settings(settings, unit_of_work=unit_of_work)
    async with registry.running():          # the drift check's loop
        engine = RiskEngine(..., scorers=registry)

Modules: `vectors` (features → floats), `learners` (the river pipelines), `training`,
`state` (signed pickles), `drift` (PSI), `models` (tables), `repository`, `service`,
`registry`, `tasks` (train, check_drift), `router` (operators' API).
"""

from __future__ import annotations

__all__: list[str] = []
