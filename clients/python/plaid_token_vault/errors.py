"""The exceptions of plaid_token_vault.

Every exception this package raises on purpose is a TokenError, so an app
can catch one class. They mirror the Go vault's errors (lifecycle/vault.go,
lifecycle/fernet.go) one for one, which the interop tests check. None ever
carries an access token or a ciphertext: messages name the item and the
shape of what was wrong, nothing more.
"""

from __future__ import annotations


class TokenError(Exception):
    """Base class of every error this package raises on purpose."""


class MalformedTokenError(TokenError):
    """The stored string is not in the expected format (Go: ErrMalformedToken)."""


class UnknownKeyError(TokenError):
    """The token names a key id the vault does not have (Go: ErrUnknownKey).

    The key is neither TOKEN_ENCRYPTION_KEY nor one of
    TOKEN_ENCRYPTION_KEY_PREVIOUS: a rotation dropped a previous key before
    ``manage-tokens reencrypt`` had moved every token off it.
    """


class DecryptError(TokenError):
    """The data did not authenticate (Go: ErrDecrypt).

    Wrong key, wrong item id (the ciphertext was moved to another document)
    or tampered data: the cipher cannot tell which.
    """


class KeyConfigError(TokenError, ValueError):
    """The key configuration cannot work (Go: CodeInvalid at start).

    An empty or too short TOKEN_ENCRYPTION_KEY, two keys sharing a key id,
    or an old Fernet token to read without LEGACY_TOKEN_ENCRYPTION_KEY.
    """


class ItemNotFoundError(TokenError):
    """No token of this user has this item id (Go: ErrItemNotFound).

    Another user's item is the same error: an app must never learn that
    someone else's item exists.
    """


class TokenUnusableError(TokenError):
    """The item is revoked or expired: the user must link the account again.

    ``status`` is the item's status. (Go: CodeConflict from UseToken.)
    """

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status
