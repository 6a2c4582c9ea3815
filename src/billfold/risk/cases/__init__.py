"""The review queue (cases: notes, decisions, labels) and automated responses (freeze
the account, lower the limits, hold outgoing movements), audited and reversible with
approval."""
