"""The catalogue is the README's feature table: every feature is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from billfold.risk.features.catalogue import FEATURES, VELOCITY_SUBJECTS, WINDOW_NAMES

README = Path(__file__).parents[3] / "README.md"


def test_every_feature_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Risk features") :]
    velocity = re.compile(r"^(user|device|payee|ip)_(count|amount)_(1m|1h|24h|30d)$")
    for name in FEATURES:
        if not velocity.match(name):
            assert f"| `{name}` |" in section, name
    assert "`{user,device,payee,ip}_count_{1m,1h,24h,30d}`" in section
    assert "`{user,device,payee,ip}_amount_{1m,1h,24h,30d}`" in section
    assert len(FEATURES) == sum(1 for n in FEATURES if not velocity.match(n)) + 2 * len(
        VELOCITY_SUBJECTS
    ) * len(WINDOW_NAMES)
