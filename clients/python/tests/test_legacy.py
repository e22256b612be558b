"""The old service's formats: Fernet values and plaintext, as fernet.go reads them."""

import base64
import hashlib
import unittest

from cryptography.fernet import Fernet

from plaid_token_vault import (
    DecryptError,
    KeyConfigError,
    LegacyDecrypter,
    MalformedTokenError,
    TokenError,
    Vault,
    is_legacy_plaintext,
    open_token,
)

# The vectors of lifecycle/fernet_test.go (legacyVectors), written once by
# cryptography exactly as the old service stored tokens.
PASSWORD = "legacy-test-pässword"
VECTORS = [
    ("Z0FBQUFBQnJDa2V6Mjc5ZklMSmh3SlZjUXlfMzBwamJ5WXJ5bUQzRUo0blhkRmZaUTVzcm4yNTRLRTFxRmdCYTZ1WS1WV2ZVN0tUUDBr"
     "QmwxZTBtOHpTMUl5UDhGOXc1RXYtdlAxaXF6MFQ5ekZuVlhLZDZZRlctQmROMW1WU0Y3OThyMUJDSnh6VlItUjlQRmFOUDlFLW4wY3VY"
     "MlZMMjJ3PT0=",
     "access-sandbox-5d1c0e7a-2b4f-4c61-8e3d-9a7b6c5d4e3f"),
    ("Z0FBQUFBQnJDa2V6dkdlS0RldlFoMWVkbkpLZjl1Skx0LS1Zc1RPbVlhdlRLUFVOOWFLa2l6NWx4amJ5UGhZMEYwR0FaS2piOC1vVkVB"
     "cjgyNGpEaXZpSGdzQUdsX0pveUFQV2Z3dV9VdXRWQlQzOXdHMDBfdHVMMkxUMURibTZycXE0MHM2c2tubFI5M1EtSnh1aE0xUGZIeUMw"
     "NmJIR0FBPT0=",
     "access-production-0123456789abcdef0123456789abcd"),
]


def old_service_encrypt(password: str, token: str) -> str:
    """The old service's write path, verbatim in substance."""
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), b"plaid_tokens_salt", 100_000, 32)
    f = Fernet(base64.urlsafe_b64encode(key))
    return base64.urlsafe_b64encode(f.encrypt(token.encode())).decode()


def rewrap(stored: str, edit) -> str:
    token = bytearray(base64.urlsafe_b64decode(base64.urlsafe_b64decode(stored)))
    return base64.urlsafe_b64encode(base64.urlsafe_b64encode(bytes(edit(token)))).decode()


def flip(i):
    def edit(b):
        b[i] ^= 1
        return b
    return edit


class LegacyDecryptTest(unittest.TestCase):
    def setUp(self):
        self.legacy = LegacyDecrypter(PASSWORD)

    def test_vectors(self):
        for stored, token in VECTORS:
            with self.subTest(token=token):
                self.assertEqual(self.legacy.decrypt(stored), token)

    def test_old_service_values(self):
        for token in ["access-sandbox-1", "access-production-" + "x" * 32, "access-sandbox-ünïcode"]:
            with self.subTest(token=token):
                self.assertEqual(self.legacy.decrypt(old_service_encrypt(PASSWORD, token)), token)

    def test_encodings(self):
        stored, token = VECTORS[0]
        bare = base64.urlsafe_b64decode(stored).decode()
        for name, value in [
            ("outer unpadded", stored.rstrip("=")),
            ("inner unpadded", base64.urlsafe_b64encode(bare.rstrip("=").encode()).decode().rstrip("=")),
            ("bare Fernet token", bare),
            ("bare, unpadded", bare.rstrip("=")),
        ]:
            with self.subTest(name):
                self.assertEqual(self.legacy.decrypt(value), token)

    def test_refusals(self):
        stored, token = VECTORS[0]
        cases = [
            ("wrong password", LegacyDecrypter("legacy-test-wrong-password"), stored, DecryptError),
            ("no password", LegacyDecrypter(""), stored, KeyConfigError),
            ("tampered version", None, rewrap(stored, flip(0)), MalformedTokenError),
            ("tampered timestamp", None, rewrap(stored, flip(8)), DecryptError),
            ("tampered ciphertext", None, rewrap(stored, flip(25)), DecryptError),
            ("tampered HMAC", None, rewrap(stored, flip(-1)), DecryptError),
            ("HMAC stripped", None, rewrap(stored, lambda b: b[:-32]), DecryptError),
            ("too short", None, rewrap(stored, lambda b: b[:72]), MalformedTokenError),
            ("not whole blocks", None, rewrap(stored, lambda b: b[:25] + b[26:]), MalformedTokenError),
            ("empty", None, "", MalformedTokenError),
            ("not base64", None, "!!not base64!!", MalformedTokenError),
            ("wraps non-base64", None, base64.urlsafe_b64encode(b"hello world").decode(), MalformedTokenError),
            ("only padding", None, "====", MalformedTokenError),
            ("format v1", None, Vault("k" * 32).encrypt("i", "access-x"), MalformedTokenError),
        ]
        for name, decrypter, value, want in cases:
            with self.subTest(name):
                with self.assertRaises(want) as ctx:
                    (decrypter or self.legacy).decrypt(value)
                self.assertNotIn(token, str(ctx.exception))

    def test_mutations_raise_token_errors_only(self):
        import random
        rng = random.Random(21)
        stored, token = VECTORS[0]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ \n\x00é"
        for _ in range(1000):
            s = list(stored)
            i = rng.randrange(len(s))
            if rng.random() < 0.5:
                s[i] = rng.choice(alphabet)
            else:
                del s[i:i + rng.randint(1, 8)]
            try:
                self.assertEqual(self.legacy.decrypt("".join(s)), token)
            except TokenError:
                pass

    def test_key_is_derived_only_when_needed(self):
        # No password and only plaintext or v1 values: nothing to complain about.
        vault = Vault("k" * 32)
        self.assertEqual(open_token("i", "access-sandbox-plain", vault, LegacyDecrypter("")), "access-sandbox-plain")


class OpenTokenTest(unittest.TestCase):
    def test_every_format(self):
        vault = Vault("test-encryption-key-not-for-production")
        legacy = LegacyDecrypter(PASSWORD)
        stored, token = VECTORS[1]
        self.assertEqual(open_token("item-1", vault.encrypt("item-1", "access-sandbox-v1"), vault, legacy),
                         "access-sandbox-v1")
        self.assertEqual(open_token("item-1", "access-sandbox-plain", vault, legacy), "access-sandbox-plain")
        self.assertEqual(open_token("item-1", stored, vault, legacy), token)
        with self.assertRaises(KeyConfigError):
            open_token("item-1", stored, vault)
        for missing in ["", None]:
            with self.assertRaises(MalformedTokenError):
                open_token("item-1", missing, vault, legacy)

    def test_is_legacy_plaintext(self):
        for s, want in [("access-sandbox-1", True), ("access-production-1", True), ("", False),
                        ("v1:abcdef01:xyz", False), ("Z0FBQUFB", False), ("public-sandbox-1", False), (None, False)]:
            with self.subTest(s=s):
                self.assertEqual(is_legacy_plaintext(s), want)


if __name__ == "__main__":
    unittest.main()
