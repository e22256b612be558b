"""The old service's token formats, readable while the migration lasts.

The old Python service stored an access token either as plaintext
(``access-...``) or as a Fernet token wrapped once more in urlsafe base64,
the Fernet key being urlsafe_b64(PBKDF2-HMAC-SHA256(password, salt
``plaid_tokens_salt``, 100,000 iterations, 32 bytes)) with the password
LEGACY_TOKEN_ENCRYPTION_KEY (DESIGN §5). lifecycle/fernet.go reads them the
same way; nothing new is ever written in these formats.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Optional

from cryptography.fernet import Fernet, InvalidToken

from .errors import DecryptError, KeyConfigError, MalformedTokenError
from .vault import PREFIX, Vault, derive_key

LEGACY_SALT = "plaid_tokens_salt"
LEGACY_ITERATIONS = 100_000

# The Fernet token layout (https://github.com/fernet/spec/blob/master/Spec.md):
# version (1 byte, 0x80) | timestamp (8) | IV (16) | AES-128-CBC ciphertext (n*16) | HMAC-SHA256 (32)
_FERNET_VERSION = 0x80
_BLOCK = 16
_HEADER_LEN = 1 + 8 + _BLOCK
_MAC_LEN = 32
_MIN_LEN = _HEADER_LEN + _BLOCK + _MAC_LEN
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def is_legacy_plaintext(stored: str) -> bool:
    """Whether ``stored`` is an access token the old service stored
    unencrypted. Plaid access tokens start with ``access-`` (e.g.
    access-sandbox-...), which neither format v1 nor a wrapped Fernet token
    (base64 of "gAAAAA...") can."""
    return isinstance(stored, str) and stored.startswith("access-")


class LegacyDecrypter:
    """Decrypts access tokens the old service stored as Fernet tokens.

    The key is derived on first use (100,000 PBKDF2 iterations), so a reader
    that meets only plaintext and v1 tokens never pays for it, and an empty
    password is reported only when an encrypted token needs it. Safe to share
    between threads.
    """

    def __init__(self, password: str) -> None:
        """``password`` is LEGACY_TOKEN_ENCRYPTION_KEY; it may be empty when no
        Fernet token is left."""
        self._password = password or ""
        self._fernet: Optional[Fernet] = None

    def decrypt(self, stored: str) -> str:
        """Returns the access token in a legacy stored value: base64url of a
        Fernet token (as the old service wrote it) or, tolerated, the bare
        Fernet token, padded or not. The token's timestamp is ignored: a
        legacy token is read however old it is.

        Raises MalformedTokenError (not a Fernet token), DecryptError (wrong
        LEGACY_TOKEN_ENCRYPTION_KEY or tampered data) or KeyConfigError (no
        password), as lifecycle/fernet.go refuses the same values.
        """
        token = _unwrap(stored)
        _check_layout(token)
        fernet = self._key()
        try:
            # ttl=None: no age or clock-skew check (the writer's clock may
            # have been wrong, and age does not matter for a migration).
            plaintext = fernet.decrypt(base64.urlsafe_b64encode(token), ttl=None)
        except InvalidToken:
            raise DecryptError(
                "decrypting legacy token: token does not verify "
                "(wrong LEGACY_TOKEN_ENCRYPTION_KEY, tampered data or invalid padding)") from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedTokenError("decrypting legacy token: the token is not UTF-8") from None

    def _key(self) -> Fernet:
        if self._fernet is None:
            if not self._password:
                raise KeyConfigError(
                    "LEGACY_TOKEN_ENCRYPTION_KEY is not set, but the data holds the old service's encrypted tokens")
            raw = derive_key(self._password, LEGACY_SALT, LEGACY_ITERATIONS, 32)
            # The old service handed Fernet urlsafe_b64(key), as here.
            self._fernet = Fernet(base64.urlsafe_b64encode(raw))
        return self._fernet


def open_token(item_id: str, stored: str, vault: Vault, legacy: Optional[LegacyDecrypter] = None) -> str:
    """Returns the access token in whatever plaid_tokens may hold while the
    migration lasts: format v1 (``v1:...``, decrypted by ``vault`` for
    ``item_id``), a plaintext ``access-...`` token as the old service left
    it (returned as it is), or the old service's Fernet value (decrypted by
    ``legacy``; KeyConfigError without one).

    Once ``manage-tokens migrate-legacy`` and ``reencrypt`` report nothing
    left, every stored value is v1 and ``vault.decrypt`` alone will do.
    """
    if not isinstance(stored, str) or not stored:
        raise MalformedTokenError(f"item {item_id!r} has no access token")
    if stored.startswith(PREFIX):
        return vault.decrypt(item_id, stored)
    if is_legacy_plaintext(stored):
        return stored
    if legacy is None:
        legacy = LegacyDecrypter("")
    return legacy.decrypt(stored)


def _unwrap(stored: str) -> bytes:
    """Turns a stored legacy value into a binary Fernet token. The old
    service stored base64url(Fernet token), and a Fernet token is itself
    base64url of binary starting with 0x80. Decoding once therefore gives
    either the text of a Fernet token ("gAAAAA...": wrapped, decode again)
    or binary starting with 0x80 (a bare token: accepted too, so that a
    value written without the extra wrapping is not lost)."""
    if not isinstance(stored, str) or not stored:
        raise MalformedTokenError("decrypting legacy token: stored token is empty")
    outer = _decode_lenient(stored)
    if outer is None:
        raise MalformedTokenError("decrypting legacy token: stored token is not base64url")
    if outer[0] == _FERNET_VERSION:
        return outer
    try:
        inner_text = outer.decode("ascii")
    except UnicodeDecodeError:
        inner_text = None
    token = _decode_lenient(inner_text) if inner_text is not None else None
    if token is None:
        raise MalformedTokenError("decrypting legacy token: stored token does not wrap a base64url Fernet token")
    return token


def _check_layout(token: bytes) -> None:
    """Refuses what is not a Fernet token before any key is involved, as
    lifecycle/fernet.go's openFernet does (so both sides call the same values
    malformed)."""
    if len(token) < _MIN_LEN:
        raise MalformedTokenError(
            f"decrypting legacy token: token is {len(token)} bytes, shorter than the Fernet minimum {_MIN_LEN}")
    if token[0] != _FERNET_VERSION:
        raise MalformedTokenError("decrypting legacy token: version byte is not Fernet's 0x80")
    if (len(token) - _HEADER_LEN - _MAC_LEN) % _BLOCK != 0:
        raise MalformedTokenError("decrypting legacy token: ciphertext is not a whole number of AES blocks")


def _decode_lenient(s: str) -> Optional[bytes]:
    """Decodes urlsafe base64 with or without padding, as lifecycle/fernet.go
    does (Go's RawURLEncoding after trimming '=': line breaks skipped, stray
    bits in the last character allowed). Python's urlsafe_b64encode pads,
    but a value copied by hand or by another tool may not be; the HMAC, not
    the encoding, authenticates the token. None when s is not base64url or
    decodes to nothing."""
    s = s.rstrip("=").replace("\r", "").replace("\n", "")
    if not s or not _BASE64URL.fullmatch(s) or len(s) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw or None
