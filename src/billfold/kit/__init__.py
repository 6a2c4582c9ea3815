"""Infrastructure with no domain knowledge: settings, database, ids, money, errors, clock."""
