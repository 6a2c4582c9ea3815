"""The key hierarchy: a root key in a keystore (local or PKCS#11 HSM), versioned
key-encryption keys per tenant and purpose, data keys, AES-256-GCM envelope encryption bound
to each ciphertext's row, rotation and rewrap, and Ed25519 signing keys published as JWKS.

Start at ``keyring.Keyring`` (encrypt, decrypt, destroy an owner's keys), ``service``
(rotate, rewrap, retire) and ``signing.active_signer``.
"""
