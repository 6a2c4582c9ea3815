"""The signed-in end user's own API (`/v1/me…`, with the user's access token)."""

from __future__ import annotations

from typing import Any, Literal, cast

from billfold.client._transport import Transport
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.signing import DeviceSigner
from billfold.client.types import (
    Device,
    DeviceList,
    DeviceSignatureVerified,
    JSONObject,
    Me,
    PasskeyList,
    PasskeyOptions,
    PasskeyRegistered,
    RecoveryCodes,
    SessionList,
    SessionsRevoked,
    StepUpChallenge,
    StepUpToken,
    TotpEnrolment,
)

__all__ = ["Devices", "MeResource", "Mfa", "Passkeys", "Sessions", "StepUps"]


class Sessions(Resource):
    def list(self) -> SessionList:
        """The user's usable sessions, oldest first (`current` marks this one)."""
        return cast(SessionList, self._transport.request("GET", "/v1/me/sessions"))

    def revoke(self, session_id: str) -> SessionsRevoked:
        path = f"/v1/me/sessions/{path_id(session_id)}/revoke"
        return cast(SessionsRevoked, self._transport.request("POST", path))

    def revoke_all(self) -> SessionsRevoked:
        """End every session, this one included."""
        return cast(SessionsRevoked, self._transport.request("POST", "/v1/me/sessions/revoke-all"))


class Mfa(Resource):
    def begin_totp(self) -> TotpEnrolment:
        """A new TOTP seed, shown once: the app scans `provisioning_uri`."""
        return cast(TotpEnrolment, self._transport.request("POST", "/v1/me/mfa/totp"))

    def confirm_totp(self, *, code: str, password: str) -> RecoveryCodes:
        """Enable TOTP with a code from the app; the first factor issues recovery codes.
        The password is asked again: an access token alone cannot add a second factor (a
        wrong one is refused like a wrong sign-in and counts towards the account lock)."""
        body = {"code": code, "password": password}
        answer = self._transport.request("POST", "/v1/me/mfa/totp/confirm", json=body)
        return cast(RecoveryCodes, answer)

    def regenerate_recovery_codes(self, *, password: str) -> RecoveryCodes:
        """Ten new recovery codes (the old ones stop working); the password is asked again."""
        answer = self._transport.request(
            "POST", "/v1/me/mfa/recovery-codes", json={"password": password}
        )
        return cast(RecoveryCodes, answer)


class Passkeys(Resource):
    def registration_options(self) -> PasskeyOptions:
        """WebAuthn `publicKey` options for `navigator.credentials.create()`."""
        return cast(PasskeyOptions, self._transport.request("POST", "/v1/me/passkeys/options"))

    def register(self, *, name: str, credential: JSONObject, password: str) -> PasskeyRegistered:
        """Register the browser's answer (`PublicKeyCredential.toJSON()`). The password is
        asked again: an access token alone cannot add a second factor (a wrong one is
        refused like a wrong sign-in and counts towards the account lock)."""
        body = {"name": name, "credential": credential, "password": password}
        answer = self._transport.request("POST", "/v1/me/passkeys", json=body)
        return cast(PasskeyRegistered, answer)

    def list(self) -> PasskeyList:
        return cast(PasskeyList, self._transport.request("GET", "/v1/me/passkeys"))


class Devices(Resource):
    def bind(self, *, name: str, signer: DeviceSigner, password: str) -> Device:
        """Bind the signer's public key; the signer learns its device id from the answer.
        A bound device answers step-ups, so the password is asked again: an access token
        alone cannot bind one (a wrong one is refused like a wrong sign-in and counts
        towards the account lock)."""
        body = {
            "name": name,
            "algorithm": signer.algorithm,
            "public_key": signer.public_key(),
            "password": password,
        }
        device = cast(Device, self._transport.request("POST", "/v1/me/devices", json=body))
        signer.device_id = device["id"]
        return device

    def list(self) -> DeviceList:
        return cast(DeviceList, self._transport.request("GET", "/v1/me/devices"))

    def revoke(self, device_id: str) -> Device:
        path = f"/v1/me/devices/{path_id(device_id)}/revoke"
        return cast(Device, self._transport.request("POST", path))

    def verify_signature(self, signer: DeviceSigner) -> DeviceSignatureVerified:
        """A request signed by the device, which the server checks (to test signing)."""
        answer = self._transport.request(
            "POST", "/v1/me/devices/verify-signature", sign=signer.sign_request
        )
        return cast(DeviceSignatureVerified, answer)


class StepUps(Resource):
    def begin(
        self,
        *,
        amount: int,
        currency: str,
        payee: str,
        method: Literal["totp", "device"],
        device_id: str | None = None,
    ) -> StepUpChallenge:
        """A challenge for exactly one action (amount in minor units, currency, payee)."""
        body: dict[str, Any] = without_none(
            {
                "amount": amount,
                "currency": currency,
                "payee": payee,
                "method": method,
                "device_id": device_id,
            }
        )
        return cast(StepUpChallenge, self._transport.request("POST", "/v1/me/step-up", json=body))

    def answer(
        self, step_up_id: str, *, totp_code: str | None = None, signature: str | None = None
    ) -> StepUpToken:
        """Answer with a TOTP code or a device signature (`DeviceSigner.sign_step_up`): a
        single-use token bound to exactly that action."""
        if (totp_code is None) == (signature is None):
            raise ValueError("give exactly one of totp_code and signature")
        body = without_none({"totp_code": totp_code, "signature": signature})
        path = f"/v1/me/step-up/{path_id(step_up_id)}/answer"
        return cast(StepUpToken, self._transport.request("POST", path, json=body))


class MeResource(Resource):
    """`user.me()` is the signed-in user; the rest hang off it."""

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport)
        self.sessions = Sessions(transport)
        self.mfa = Mfa(transport)
        self.passkeys = Passkeys(transport)
        self.devices = Devices(transport)
        self.step_up = StepUps(transport)

    def __call__(self) -> Me:
        return cast(Me, self._transport.request("GET", "/v1/me"))

    def get(self) -> Me:
        return self()

    def log_out(self) -> SessionsRevoked:
        """End this session (the client then needs a new sign-in)."""
        return cast(SessionsRevoked, self._transport.request("POST", "/v1/me/logout"))
