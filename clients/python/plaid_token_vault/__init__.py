"""plaid_token_vault: the app's side of the Plaid token lifecycle service.

A reference implementation, small enough to vendor, of what a Python writer
or reader of the ``plaid_tokens`` collection needs (DESIGN §5, §6, §7): the
token format v1 (Vault), the old service's formats while the migration
lasts (LegacyDecrypter, open_token), and the reads and usage rule over the
app's google-cloud-firestore client (TokenStore, record_use). It needs the
standard library and ``cryptography`` only. See README.md.
"""

from .errors import (
    DecryptError,
    ItemNotFoundError,
    KeyConfigError,
    MalformedTokenError,
    TokenError,
    TokenUnusableError,
    UnknownKeyError,
)
from .legacy import LegacyDecrypter, is_legacy_plaintext, open_token
from .store import LEGACY_ERROR_CODE, USAGE_WRITE_EVERY, Item, TokenStore, record_use
from .vault import DEFAULT_SALT, Vault

__all__ = [
    "DEFAULT_SALT",
    "DecryptError",
    "Item",
    "ItemNotFoundError",
    "KeyConfigError",
    "LEGACY_ERROR_CODE",
    "LegacyDecrypter",
    "MalformedTokenError",
    "TokenError",
    "TokenStore",
    "TokenUnusableError",
    "USAGE_WRITE_EVERY",
    "UnknownKeyError",
    "Vault",
    "is_legacy_plaintext",
    "open_token",
    "record_use",
]
