"""FX: reference rates (ECB XML or a static table), quotes that lock a rate with a spread and
an expiry, and conversion between one owner's currency accounts through FX positions."""
