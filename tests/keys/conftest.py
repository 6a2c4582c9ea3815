from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from keys.keys_support import SoftHsmToken, init_softhsm_token


@pytest.fixture
async def unit_of_work(database_url: str) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    """One token per session: PKCS#11 libraries initialize once per process, so every HSM
    test shares the module; each test uses its own key label."""
    return init_softhsm_token(Path(tmp_path_factory.mktemp("softhsm")))
