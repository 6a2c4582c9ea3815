"""The HTTP layer for end users: parse, call the services, shape the response.

Three kinds of routes, each with its own credential:

- ``/v1/users…``: the tenant's backend, with an API key holding ``users:admin``; it sees
  only its own tenant's users of its key's mode.
- ``/v1/sessions…``: signing in, public on purpose (:data:`PUBLIC_ROUTES`); the password,
  the MFA token or the refresh token in the body is the credential.
- ``/v1/me…``: the end user, with an access token (``Bearer bfu_at_…``).

Refusals that must leave a trace (failed sign-ins, a wrong password asked again before an
authentication element is added, a reused refresh token, a wrong step-up answer) go through
``work.run_recording_failures``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billfold.identity.auth import get_unit_of_work, require_scopes
from billfold.identity.schemas import TENANT_ID_PREFIX, datetime_from_ns
from billfold.identity.security_events import ActorType
from billfold.identity.types import Principal, Scope
from billfold.identity.users import devices, mfa, service, sessions, step_up
from billfold.identity.users.auth import VerifiedDevice, authenticate_user, device_signed
from billfold.identity.users.config import UsersConfig, get_users_config
from billfold.identity.users.devices import DEVICE_CLOCK_SKEW_S
from billfold.identity.users.errors import InvalidCredentials
from billfold.identity.users.mfa import PasskeyAnswer, RecoveryCodeAnswer, TotpAnswer
from billfold.identity.users.models import NONCE_LENGTH_MAX
from billfold.identity.users.schemas import (
    DeviceBindRequest,
    DeviceList,
    DeviceResponse,
    DeviceSignatureResponse,
    LoginRequest,
    LoginResponse,
    MeResponse,
    MfaCompleteRequest,
    MfaRequiredResponse,
    MfaTokenRequest,
    PasskeyList,
    PasskeyOptionsResponse,
    PasskeyRegistered,
    PasskeyRegistrationRequest,
    PasskeyResponse,
    PasswordRequest,
    RecoveryCodesResponse,
    RefreshRequest,
    SessionList,
    SessionResponse,
    SessionsRevoked,
    StepUpAnswerRequest,
    StepUpChallengeResponse,
    StepUpRequest,
    StepUpTokenResponse,
    TokenResponse,
    TotpConfirmRequest,
    TotpEnrolmentResponse,
    UserCreateRequest,
    UserPage,
    UserResponse,
)
from billfold.identity.users.signatures import NONCE_LENGTH_MIN
from billfold.identity.users.types import (
    DEVICE_ID_PREFIX,
    SESSION_ID_PREFIX,
    STEP_UP_ID_PREFIX,
    USER_ID_PREFIX,
    UserPrincipal,
)
from billfold.identity.users.work import (
    run_attempt,
    run_reauthenticated,
    run_recording_failures,
)
from billfold.keys.keyring import Keyring
from billfold.keys.router import get_keyring
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation, invariant
from billfold.kit.http.caching import no_store
from billfold.kit.http.openapi import problem_responses
from billfold.kit.http.rate_limit import throttle_sign_in
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX

__all__ = ["PUBLIC_ROUTES", "router"]

PUBLIC_ROUTES = frozenset(
    {
        ("POST", "/v1/sessions"),
        ("POST", "/v1/sessions/mfa"),
        ("POST", "/v1/sessions/mfa/passkey-options"),
        ("POST", "/v1/sessions/refresh"),
    }
)
"""Routes without an API key or access token: the body carries the credential."""

router = APIRouter(prefix="/v1", responses=problem_responses(401, 422))
Admin = Annotated[Principal, Depends(require_scopes(Scope.USERS_ADMIN))]
User = Annotated[UserPrincipal, Depends(authenticate_user)]
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Config = Annotated[UsersConfig, Depends(get_users_config)]
Keys = Annotated[Keyring, Depends(get_keyring)]


# The tenant's backend ------------------------------------------------------------------


@router.post(
    "/users",
    status_code=201,
    tags=["users"],
    summary="Sign a user up in the API key's tenant and mode.",
    responses=problem_responses(403, 409),
)
async def create_user(
    body: UserCreateRequest, principal: Admin, unit_of_work: Work, config: Config
) -> UserResponse:
    async with unit_of_work.begin() as session:
        user = await service.create_user(
            session,
            principal=principal,
            email=body.email,
            phone=body.phone,
            handle=body.handle,
            password=body.password,
            config=config,
            now_ns=config.clock.now_ns(),
        )
    return UserResponse.from_model(user)


@router.get(
    "/users",
    tags=["users"],
    summary="List the tenant's users of the key's mode, or find one by identifier.",
    responses=problem_responses(400, 403),
)
async def list_users(
    principal: Admin,
    unit_of_work: Work,
    identifier: Annotated[str | None, Query(min_length=1, max_length=254)] = None,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> UserPage:
    async with unit_of_work.read() as session:
        page = await service.list_users(
            session, principal=principal, identifier=identifier, cursor=cursor, limit=limit
        )
        return UserPage(
            items=[UserResponse.from_model(user) for user in page.items],
            next_cursor=page.next_cursor,
        )


@router.get(
    "/users/{user_id}",
    tags=["users"],
    summary="Get one of the tenant's users.",
    responses=problem_responses(400, 403, 404),
)
async def get_user(user_id: str, principal: Admin, unit_of_work: Work) -> UserResponse:
    parsed_id = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.read() as session:
        user = await service.get_user(session, principal=principal, user_id=parsed_id)
        return UserResponse.from_model(user)


@router.post(
    "/users/{user_id}/sessions/revoke",
    tags=["users"],
    summary="End every session of one of the tenant's users.",
    responses=problem_responses(400, 403, 404),
)
async def revoke_user_sessions(
    user_id: str, principal: Admin, unit_of_work: Work, config: Config
) -> SessionsRevoked:
    parsed_id = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.begin() as session:
        count = await service.revoke_user_sessions(
            session, principal=principal, user_id=parsed_id, now_ns=config.clock.now_ns()
        )
    return SessionsRevoked(revoked=count)


# Signing in (public on purpose) ----------------------------------------------------------


@router.post(
    "/sessions",
    dependencies=[Depends(throttle_sign_in), Depends(no_store)],
    tags=["sign-in"],
    summary="Sign in with a password: tokens, or what the second step needs.",
    responses=problem_responses(400),
)
async def login(body: LoginRequest, unit_of_work: Work, config: Config) -> LoginResponse:
    tenant_id = parse_id(TENANT_ID_PREFIX, body.tenant_id)
    now_ns = config.clock.now_ns()
    result = await run_recording_failures(
        unit_of_work,
        lambda session: service.login(
            session,
            tenant_id=tenant_id,
            mode=body.mode,
            identifier=body.identifier,
            password=body.password,
            config=config,
            now_ns=now_ns,
        ),
    )
    if result.refused:  # recorded and committed by the service; the answer never says why
        raise InvalidCredentials()
    if result.mfa is not None:
        mfa_required = MfaRequiredResponse(
            mfa_token=result.mfa.mfa_token,
            expires_at=datetime_from_ns(result.mfa.expires_at),
            methods=result.mfa.methods,
        )
        return LoginResponse(status="mfa_required", mfa=mfa_required)
    invariant(result.tokens is not None, "a sign-in gives tokens or an MFA requirement")
    assert result.tokens is not None  # for mypy; checked above even under -O
    return LoginResponse(status="authenticated", tokens=TokenResponse.from_issued(result.tokens))


@router.post(
    "/sessions/mfa/passkey-options",
    dependencies=[Depends(throttle_sign_in)],
    tags=["sign-in"],
    summary="WebAuthn options for answering the second step with a passkey.",
)
async def mfa_passkey_options(
    body: MfaTokenRequest, unit_of_work: Work, config: Config
) -> PasskeyOptionsResponse:
    async with unit_of_work.begin() as session:
        options = await service.mfa_passkey_options(
            session, mfa_token=body.mfa_token, config=config, now_ns=config.clock.now_ns()
        )
    return PasskeyOptionsResponse(options=options)


@router.post(
    "/sessions/mfa",
    dependencies=[Depends(throttle_sign_in), Depends(no_store)],
    tags=["sign-in"],
    summary="Complete a sign-in with a TOTP code, a recovery code or a passkey.",
)
async def complete_mfa(
    body: MfaCompleteRequest, unit_of_work: Work, config: Config, keyring: Keys
) -> TokenResponse:
    answer: TotpAnswer | RecoveryCodeAnswer | PasskeyAnswer
    if body.totp_code is not None:
        answer = TotpAnswer(code=body.totp_code)
    elif body.recovery_code is not None:
        answer = RecoveryCodeAnswer(code=body.recovery_code)
    elif body.passkey is not None:
        answer = PasskeyAnswer(credential=body.passkey.as_json())
    else:
        raise InvariantViolation("the request model requires exactly one answer")
    now_ns = config.clock.now_ns()
    issued = await run_attempt(
        unit_of_work,
        reserve=lambda session: service.reserve_mfa_attempt(
            session, mfa_token=body.mfa_token, now_ns=now_ns
        ),
        check=lambda session: service.complete_mfa(
            session,
            mfa_token=body.mfa_token,
            answer=answer,
            config=config,
            keyring=keyring,
            now_ns=now_ns,
        ),
    )
    return TokenResponse.from_issued(issued)


@router.post(
    "/sessions/refresh",
    dependencies=[Depends(throttle_sign_in), Depends(no_store)],
    tags=["sign-in"],
    summary="Exchange a refresh token (spent by this) for a new token pair.",
)
async def refresh(body: RefreshRequest, unit_of_work: Work, config: Config) -> TokenResponse:
    now_ns = config.clock.now_ns()
    issued = await run_recording_failures(
        unit_of_work,
        lambda session: sessions.refresh_session(
            session, refresh_token=body.refresh_token, now_ns=now_ns
        ),
    )
    return TokenResponse.from_issued(issued)


# The signed-in user -------------------------------------------------------------------


@router.get("/me", tags=["me"], summary="The signed-in user and their second factors.")
async def get_me(principal: User, unit_of_work: Work) -> MeResponse:
    async with unit_of_work.read() as session:
        user = await service.signed_in_user(session, principal=principal)
        methods = await mfa.enrolled_methods(session, user_id=user.id)
        return MeResponse.from_user(user, mfa_methods=methods)


@router.post("/me/logout", tags=["me"], summary="End the caller's own session.")
async def logout(principal: User, unit_of_work: Work, config: Config) -> SessionsRevoked:
    async with unit_of_work.begin() as session:
        await sessions.revoke_session(
            session,
            principal=principal,
            session_id=principal.session_id,
            now_ns=config.clock.now_ns(),
            reason="logout",
        )
    return SessionsRevoked(revoked=1)


@router.get("/me/sessions", tags=["me"], summary="The user's usable sessions, oldest first.")
async def list_sessions(principal: User, unit_of_work: Work, config: Config) -> SessionList:
    async with unit_of_work.read() as session:
        rows = await sessions.list_sessions(
            session, principal=principal, now_ns=config.clock.now_ns()
        )
        items = [
            SessionResponse.from_model(row, current=row.id == principal.session_id) for row in rows
        ]
    return SessionList(items=items)


@router.post(
    "/me/sessions/revoke-all", tags=["me"], summary="End every session, this one included."
)
async def revoke_all_sessions(
    principal: User, unit_of_work: Work, config: Config
) -> SessionsRevoked:
    async with unit_of_work.begin() as session:
        user = await service.signed_in_user(session, principal=principal)
        count = await sessions.revoke_all_sessions(
            session, user=user, now_ns=config.clock.now_ns(), actor_type=ActorType.USER
        )
    return SessionsRevoked(revoked=count)


@router.post(
    "/me/sessions/{session_id}/revoke",
    tags=["me"],
    summary="End one of the user's sessions.",
    responses=problem_responses(400, 404),
)
async def revoke_session(
    session_id: str, principal: User, unit_of_work: Work, config: Config
) -> SessionsRevoked:
    parsed_id = parse_id(SESSION_ID_PREFIX, session_id)
    async with unit_of_work.begin() as session:
        await sessions.revoke_session(
            session, principal=principal, session_id=parsed_id, now_ns=config.clock.now_ns()
        )
    return SessionsRevoked(revoked=1)


@router.post(
    "/me/mfa/totp",
    dependencies=[Depends(no_store)],
    tags=["me"],
    summary="Start TOTP enrolment: a new seed, shown once.",
    responses=problem_responses(409),
)
async def begin_totp(
    principal: User, unit_of_work: Work, config: Config, keyring: Keys
) -> TotpEnrolmentResponse:
    async with unit_of_work.begin() as session:
        enrolment = await mfa.begin_totp_enrolment(
            session,
            principal=principal,
            config=config,
            keyring=keyring,
            now_ns=config.clock.now_ns(),
        )
    return TotpEnrolmentResponse(
        secret=enrolment.secret, provisioning_uri=enrolment.provisioning_uri
    )


@router.post(
    "/me/mfa/totp/confirm",
    dependencies=[Depends(no_store)],
    tags=["me"],
    summary=(
        "Enable TOTP with a code from the app (the password is asked again);"
        " the first factor issues recovery codes."
    ),
    responses=problem_responses(409),
)
async def confirm_totp(
    body: TotpConfirmRequest, principal: User, unit_of_work: Work, config: Config, keyring: Keys
) -> RecoveryCodesResponse:
    now_ns = config.clock.now_ns()
    codes = await run_reauthenticated(
        unit_of_work,
        principal=principal,
        now_ns=now_ns,
        action=lambda session: mfa.confirm_totp_enrolment(
            session,
            principal=principal,
            code=body.code,
            password=body.password,
            config=config,
            keyring=keyring,
            now_ns=now_ns,
        ),
    )
    return RecoveryCodesResponse(recovery_codes=codes)


@router.post(
    "/me/mfa/recovery-codes",
    dependencies=[Depends(no_store)],
    tags=["me"],
    summary="Replace the recovery codes with ten new ones (the password is asked again).",
    responses=problem_responses(409),
)
async def regenerate_recovery_codes(
    body: PasswordRequest, principal: User, unit_of_work: Work, config: Config
) -> RecoveryCodesResponse:
    now_ns = config.clock.now_ns()
    codes = await run_reauthenticated(
        unit_of_work,
        principal=principal,
        now_ns=now_ns,
        action=lambda session: mfa.regenerate_recovery_codes(
            session, principal=principal, password=body.password, config=config, now_ns=now_ns
        ),
    )
    return RecoveryCodesResponse(recovery_codes=codes)


@router.post(
    "/me/passkeys/options",
    tags=["me"],
    summary="WebAuthn options to register a passkey.",
    responses=problem_responses(409),
)
async def passkey_registration_options(
    principal: User, unit_of_work: Work, config: Config
) -> PasskeyOptionsResponse:
    async with unit_of_work.begin() as session:
        options = await mfa.passkey_registration_options(
            session, principal=principal, config=config, now_ns=config.clock.now_ns()
        )
    return PasskeyOptionsResponse(options=options)


@router.post(
    "/me/passkeys",
    dependencies=[Depends(no_store)],
    status_code=201,
    tags=["me"],
    summary=(
        "Register a passkey from the browser's answer to the options (the password is asked again)."
    ),
    responses=problem_responses(409),
)
async def register_passkey(
    body: PasskeyRegistrationRequest, principal: User, unit_of_work: Work, config: Config
) -> PasskeyRegistered:
    now_ns = config.clock.now_ns()
    registered = await run_reauthenticated(
        unit_of_work,
        principal=principal,
        now_ns=now_ns,
        action=lambda session: mfa.register_passkey(
            session,
            principal=principal,
            name=body.name,
            credential=body.credential_json(),
            password=body.password,
            config=config,
            now_ns=now_ns,
        ),
    )
    return PasskeyRegistered(
        passkey=PasskeyResponse.from_model(registered.passkey),
        recovery_codes=registered.recovery_codes,
    )


@router.get("/me/passkeys", tags=["me"], summary="The user's passkeys.")
async def list_passkeys(principal: User, unit_of_work: Work) -> PasskeyList:
    async with unit_of_work.read() as session:
        passkeys = await mfa.list_passkeys(session, principal=principal)
        return PasskeyList(items=[PasskeyResponse.from_model(passkey) for passkey in passkeys])


@router.post(
    "/me/devices",
    status_code=201,
    tags=["me"],
    summary="Bind a device public key, Ed25519 or P-256 (the password is asked again).",
    responses=problem_responses(409),
)
async def bind_device(
    body: DeviceBindRequest, principal: User, unit_of_work: Work, config: Config
) -> DeviceResponse:
    now_ns = config.clock.now_ns()
    public_key_der = body.public_key_der()
    device = await run_reauthenticated(
        unit_of_work,
        principal=principal,
        now_ns=now_ns,
        action=lambda session: devices.bind_device(
            session,
            principal=principal,
            name=body.name,
            algorithm=body.algorithm,
            public_key_der=public_key_der,
            password=body.password,
            config=config,
            now_ns=now_ns,
        ),
    )
    return DeviceResponse.from_model(device)


@router.get("/me/devices", tags=["me"], summary="The user's unrevoked devices.")
async def list_devices(principal: User, unit_of_work: Work) -> DeviceList:
    async with unit_of_work.read() as session:
        rows = await devices.list_devices(session, principal=principal)
        return DeviceList(items=[DeviceResponse.from_model(device) for device in rows])


_DEVICE_SIGNATURE_DESCRIPTION = f"""\
Answers 200 when this request is signed by one of the caller's bound devices; the same
check guards every route that takes a device signature. A signed request carries, besides
the access token, four headers:

- `Billfold-Device-Id`: the device's id, `dev_…`, as bound;
- `Billfold-Device-Timestamp`: Unix time in whole seconds, decimal, at most
  {DEVICE_CLOCK_SKEW_S} seconds from the server's clock either way;
- `Billfold-Device-Nonce`: {NONCE_LENGTH_MIN} to {NONCE_LENGTH_MAX} characters of
  `A-Z a-z 0-9 _ -`, never used by the device before (a replay is refused);
- `Billfold-Device-Signature`: the signature, base64url (padding optional).

The signature covers exactly these seven lines, UTF-8, joined by `\\n` (no trailing
newline):

```
billfold-device-request-v1
<Billfold-Device-Id, as sent>
<HTTP method, uppercase>
<path as sent (percent-encoded), then ? and the query string if there is one>
<Billfold-Device-Timestamp, as sent>
<Billfold-Device-Nonce, as sent>
<SHA-256 of the exact body bytes, lowercase hex (of no bytes for an empty body)>
```

Ed25519 keys sign with Ed25519 (64 bytes). P-256 keys sign with ECDSA over SHA-256; the
signature is DER, or r || s (two 32-byte big-endian integers, as WebCrypto produces).
Any failure is 401 `device_signature_invalid`."""


@router.post(
    "/me/devices/verify-signature",
    tags=["me"],
    summary="Check this request's device signature (to test a client's signing code).",
    description=_DEVICE_SIGNATURE_DESCRIPTION,
)
async def verify_device_signature(
    verified: Annotated[VerifiedDevice, Depends(device_signed)],
) -> DeviceSignatureResponse:
    return DeviceSignatureResponse(device_id=verified.device_id)


@router.post(
    "/me/devices/{device_id}/revoke",
    tags=["me"],
    summary="Revoke a device: its signatures are refused from now on.",
    responses=problem_responses(400, 404),
)
async def revoke_device(
    device_id: str, principal: User, unit_of_work: Work, config: Config
) -> DeviceResponse:
    parsed_id = parse_id(DEVICE_ID_PREFIX, device_id)
    async with unit_of_work.begin() as session:
        device = await devices.revoke_device(
            session, principal=principal, device_id=parsed_id, now_ns=config.clock.now_ns()
        )
    return DeviceResponse.from_model(device)


@router.post(
    "/me/step-up",
    status_code=201,
    tags=["me"],
    summary="Challenge for one action (amount, currency, payee), to answer by TOTP or device.",
    responses=problem_responses(400, 404, 409),
)
async def begin_step_up(
    body: StepUpRequest, principal: User, unit_of_work: Work, config: Config
) -> StepUpChallengeResponse:
    device_id = None if body.device_id is None else parse_id(DEVICE_ID_PREFIX, body.device_id)
    async with unit_of_work.begin() as session:
        challenge = await step_up.begin_step_up(
            session,
            principal=principal,
            amount=body.amount,
            currency=body.currency,
            payee=body.payee,
            method=body.method,
            device_id=device_id,
            now_ns=config.clock.now_ns(),
        )
        message = step_up.message_of(challenge)
    return StepUpChallengeResponse.from_model(challenge, message=message)


@router.post(
    "/me/step-up/{step_up_id}/answer",
    dependencies=[Depends(no_store)],
    tags=["me"],
    summary="Answer a step-up: a one-time token bound to exactly its action.",
    responses=problem_responses(400, 403, 404),
)
async def answer_step_up(
    step_up_id: str,
    body: StepUpAnswerRequest,
    principal: User,
    unit_of_work: Work,
    config: Config,
    keyring: Keys,
) -> StepUpTokenResponse:
    parsed_id = parse_id(STEP_UP_ID_PREFIX, step_up_id)
    now_ns = config.clock.now_ns()
    issued = await run_attempt(
        unit_of_work,
        reserve=lambda session: step_up.reserve_step_up_attempt(
            session, principal=principal, step_up_id=parsed_id, now_ns=now_ns
        ),
        check=lambda session: step_up.answer_step_up(
            session,
            principal=principal,
            step_up_id=parsed_id,
            totp_code=body.totp_code,
            signature=body.signature,
            keyring=keyring,
            now_ns=now_ns,
        ),
    )
    return StepUpTokenResponse(
        step_up_token=issued.token, expires_at=datetime_from_ns(issued.expires_at)
    )
