"""Real-time risk features: what the engine knows of a movement before it decides.

- `catalogue.FEATURES`: every feature's name, type and meaning (rules may use only these);
- `counters`: the velocity counters (`MemoryCounters`, `RedisCounters`, `DatabaseCounters`);
- `service.FeatureComputer`: the engine's `FeatureSource`; `feature_source_from_settings`
  builds the one the settings ask for;
- `ip_countries.ip_country_of`: the country of an IP address from the configured table;
- `router`: risk profiles (`PUT`/`GET /v1/risk/profiles/{user_id}`).
"""
