"""The floor under `bench/api.py`: the same request through the same server (uvicorn with
uvloop and httptools, as many processes), answered by FastAPI from the request alone.

`POST /v1/transfers` validates the same body with a pydantic model, reads the
`Authorization` and `Idempotency-Key` headers and answers 201 with a transfer-shaped JSON
body; it has no middleware, no authentication, no idempotency record, no database and no
log line. What it reaches on a machine is what the API could reach there if everything
Billfold does per request cost nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header
from pydantic import BaseModel

app = FastAPI()


class TransferBody(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: str
    ledger: str
    code: int


class TransferAnswer(TransferBody):
    flags: int
    timestamp: int


@app.post("/v1/transfers", status_code=201)
async def create_transfer(
    body: TransferBody,
    authorization: Annotated[str, Header()],
    idempotency_key: Annotated[str, Header()],
) -> TransferAnswer:
    return TransferAnswer(**body.model_dump(), flags=0, timestamp=len(idempotency_key))


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ready"}
