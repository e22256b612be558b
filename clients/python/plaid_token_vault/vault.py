"""Format v1 of a stored access token (DESIGN §6), as lifecycle/vault.go has it.

    "v1:" + key id + ":" + base64url-nopad(nonce || ciphertext || tag)

AES-256-GCM with a 12-byte random nonce and the item id (UTF-8) as
additional data, the key derived from TOKEN_ENCRYPTION_KEY by
PBKDF2-HMAC-SHA256 (600,000 iterations, salt TOKEN_ENCRYPTION_SALT). The key
id is the lowercase hex of the first 4 bytes of SHA-256(key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
from typing import Iterable, Mapping, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptError, KeyConfigError, MalformedTokenError, UnknownKeyError

PREFIX = "v1:"
DEFAULT_SALT = "plaid-token-lifecycle/v1"
ITERATIONS = 600_000
MIN_KEY_LENGTH = 32  # bytes of TOKEN_ENCRYPTION_KEY the service accepts at start

_KEY_LEN = 32  # AES-256
_NONCE_LEN = 12  # the GCM standard nonce size
_TAG_LEN = 16
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class Vault:
    """Encrypts access tokens for storage and decrypts them for use, in format v1.

    It encrypts with the current key only; previous keys still decrypt, so
    keys can be rotated and documents re-encrypted at leisure (``manage-tokens
    reencrypt``). A Vault is immutable after construction and safe to share
    between threads.

    Building one derives every key: PBKDF2 with 600,000 iterations takes
    about half a second per key in CPython. Build one per process, when it
    is first needed, never per request. Derived keys are also cached per
    process, so a second Vault with the same passwords and salt costs
    nothing.
    """

    def __init__(self, key: str, previous: Iterable[str] = (), salt: str = "") -> None:
        """Derives the current key from ``key`` (TOKEN_ENCRYPTION_KEY) and the
        older ones from ``previous`` (TOKEN_ENCRYPTION_KEY_PREVIOUS), with
        ``salt`` (TOKEN_ENCRYPTION_SALT; empty means DEFAULT_SALT).

        Raises KeyConfigError when ``key`` is empty or two different
        passwords give the same key id.
        """
        if not key:
            raise KeyConfigError("creating vault: TOKEN_ENCRYPTION_KEY is empty")
        salt = salt or DEFAULT_SALT
        # A key listed twice, or both current and previous (midway through a
        # rotation), is one key.
        passwords = [key]
        for p in previous:
            if p and p not in passwords:
                passwords.append(p)
        self._keys: dict[str, AESGCM] = {}
        self._key_id = ""
        for i, password in enumerate(passwords):
            derived = derive_key(password, salt, ITERATIONS, _KEY_LEN)
            key_id = hashlib.sha256(derived).digest()[:4].hex()
            if key_id in self._keys:
                # Duplicate passwords were dropped above: two different keys
                # collide (a 1 in 2^32 chance) and could not be told apart.
                raise KeyConfigError(
                    f"creating vault: two different encryption keys share key id {key_id}; choose another key")
            self._keys[key_id] = AESGCM(derived)
            if i == 0:
                self._key_id = key_id

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Vault":
        """Builds the vault the service's configuration describes.

        Reads TOKEN_ENCRYPTION_KEY (required, at least 32 bytes, as the
        service refuses shorter ones at start), TOKEN_ENCRYPTION_KEY_PREVIOUS
        (comma-separated, blanks ignored) and TOKEN_ENCRYPTION_SALT from
        ``environ`` (default os.environ).
        """
        env = os.environ if environ is None else environ
        key = env.get("TOKEN_ENCRYPTION_KEY", "")
        if not key:
            raise KeyConfigError("TOKEN_ENCRYPTION_KEY is not set")
        if len(key.encode("utf-8")) < MIN_KEY_LENGTH:
            raise KeyConfigError(f"TOKEN_ENCRYPTION_KEY must be at least {MIN_KEY_LENGTH} bytes")
        previous = [p.strip() for p in env.get("TOKEN_ENCRYPTION_KEY_PREVIOUS", "").split(",")]
        return cls(key, [p for p in previous if p], env.get("TOKEN_ENCRYPTION_SALT", ""))

    @property
    def key_id(self) -> str:
        """The key id of TOKEN_ENCRYPTION_KEY: the id every new ciphertext carries."""
        return self._key_id

    def encrypt(self, item_id: str, token: str) -> str:
        """Encrypts an access token for the document of ``item_id`` with the
        current key. The item id is bound in as additional data, so the
        result only decrypts for that item."""
        if not item_id:
            raise ValueError("encrypting token: item id is empty")
        if not token:
            raise ValueError(f"encrypting token of item {item_id!r}: access token is empty")
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._keys[self._key_id].encrypt(nonce, token.encode("utf-8"), item_id.encode("utf-8"))
        return PREFIX + self._key_id + ":" + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def decrypt(self, item_id: str, stored: str) -> str:
        """Returns the access token stored for ``item_id``.

        Accepts ciphertexts of the current and of every previous key. Raises
        MalformedTokenError, UnknownKeyError or DecryptError, as the Go vault
        refuses the same strings.
        """
        if not item_id:
            raise ValueError("decrypting token: item id is empty")
        key_id, payload = _parse_v1(stored, item_id)
        aead = self._keys.get(key_id)
        if aead is None:
            raise UnknownKeyError(
                f"decrypting token of item {item_id!r}: key id {key_id} is neither "
                "TOKEN_ENCRYPTION_KEY nor in TOKEN_ENCRYPTION_KEY_PREVIOUS")
        raw = _decode_strict(payload)
        if raw is None:
            raise MalformedTokenError(f"decrypting token of item {item_id!r}: payload is not unpadded base64url")
        if len(raw) < _NONCE_LEN + _TAG_LEN:
            raise MalformedTokenError(
                f"decrypting token of item {item_id!r}: payload is {len(raw)} bytes, "
                f"shorter than nonce and tag ({_NONCE_LEN + _TAG_LEN})")
        try:
            plaintext = aead.decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], item_id.encode("utf-8"))
        except InvalidTag:
            raise DecryptError(
                f"decrypting token of item {item_id!r} with key {key_id}: "
                "wrong key, wrong item id or tampered data") from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            # Authentic, so written by a holder of the key: not a token any
            # writer of this format produces.
            raise MalformedTokenError(f"decrypting token of item {item_id!r}: the token is not UTF-8") from None

    def needs_reencrypt(self, stored: str) -> bool:
        """Whether ``stored`` should be rewritten with the current key: it is
        not a well-formed v1 string (a legacy plaintext or Fernet value, say)
        or it carries another key's id."""
        try:
            key_id, _ = _parse_v1(stored, "")
        except MalformedTokenError:
            return True
        return key_id != self._key_id


def _parse_v1(stored: str, item_id: str) -> tuple[str, str]:
    """Splits a v1 string into its key id and base64 payload. Its errors
    describe the shape only: the string may be a plaintext token, and must
    not end up in a log."""
    where = f"decrypting token of item {item_id!r}: " if item_id else ""
    if not isinstance(stored, str) or not stored:
        raise MalformedTokenError(where + "stored token is empty")
    if not stored.startswith(PREFIX):
        raise MalformedTokenError(where + f"stored token does not start with {PREFIX!r}")
    key_id, sep, payload = stored[len(PREFIX):].partition(":")
    if not sep:
        raise MalformedTokenError(where + "stored token has no key id separator")
    if not _KEY_ID.fullmatch(key_id):
        raise MalformedTokenError(where + "stored token's key id is not 8 lowercase hex digits")
    if not payload:
        raise MalformedTokenError(where + "stored token has an empty payload")
    return key_id, payload


def _decode_strict(s: str) -> Optional[bytes]:
    """Decodes unpadded base64url with exactly one accepted spelling per
    payload, as Go's RawURLEncoding.Strict(): no padding, no line breaks or
    other characters (which CPython's decoder would skip), no stray bits in
    the last character. None when s is not that."""
    if not _BASE64URL.fullmatch(s) or len(s) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != s:
        return None
    return raw


# Derived keys, per process: every Vault or LegacyDecrypter built from the
# same configuration (and every test) pays for a derivation once.
_derived: dict[tuple[str, str, int, int], bytes] = {}
_derived_lock = threading.Lock()


def derive_key(password: str, salt: str, iterations: int, length: int) -> bytes:
    """PBKDF2-HMAC-SHA256(password, salt, iterations, length), both strings as
    UTF-8, computed at most once per process for each combination."""
    cache_key = (password, salt, iterations, length)
    with _derived_lock:
        key = _derived.get(cache_key)
        if key is None:
            key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt.encode("utf-8"), iterations, length)
            _derived[cache_key] = key
    return key
