"""Format v1: round trips, rotation, and the refusals the Go vault makes.

The live comparison with the Go vault (Go encrypts, Python decrypts and the
reverse, every refusal classified alike) is interop_test.go, next to this
directory; the known answers here were written by the Go vault once, so
that these tests alone already pin the format.
"""

import base64
import hashlib
import unittest

from plaid_token_vault import (
    DecryptError,
    KeyConfigError,
    MalformedTokenError,
    TokenError,
    UnknownKeyError,
    Vault,
)

KEY = "test-encryption-key-not-for-production"
OLD_KEY = "test-encryption-key-of-last-year-0123"

# Written by lifecycle.NewVault(password, nil, salt).Encrypt(item_id, token).
KNOWN_ANSWERS = [
    {
        "password": "known-answer-encryption-key-0123456789", "salt": "",
        "key_id": "df28f995", "item_id": "item-known-answer",
        "stored": "v1:df28f995:3d-kCthGGMeuxZn4kZcR2NRhLr-XE_jZjfVcpevWv2m7eZmfFVgLayu38r1ztgY_X-Pe8msscBKT3YMk",
        "token": "access-sandbox-known-answer-0001",
    },
    {
        # Non-ASCII password, salt and item id: all three are UTF-8.
        "password": "known-answer-pässword-with-salt-0123456789", "salt": "app-salt/ü",
        "key_id": "d7f1b9ae", "item_id": "ítem-ünicode",
        "stored": "v1:d7f1b9ae:wthAiIsVqo20-M1Fq0WJrodMjRUPesJhAema1Gq5B8Ldk34YJgQ8FEriXfhvyYe3sWQmC_8YRWfJYdruz9oZ",
        "token": "access-production-known-answer-0002",
    },
]


class KnownAnswerTest(unittest.TestCase):
    def test_go_vault_ciphertexts_decrypt(self):
        for ka in KNOWN_ANSWERS:
            with self.subTest(key_id=ka["key_id"]):
                vault = Vault(ka["password"], salt=ka["salt"])
                self.assertEqual(vault.key_id, ka["key_id"])
                self.assertEqual(vault.decrypt(ka["item_id"], ka["stored"]), ka["token"])
                self.assertFalse(vault.needs_reencrypt(ka["stored"]))

    def test_key_derivation_is_design_section_6(self):
        # PBKDF2-HMAC-SHA256, 600,000 iterations, 32 bytes, default salt; the
        # key id is the hex of SHA-256(key)'s first 4 bytes.
        key = hashlib.pbkdf2_hmac("sha256", KEY.encode(), b"plaid-token-lifecycle/v1", 600_000, 32)
        self.assertEqual(Vault(KEY).key_id, hashlib.sha256(key).digest()[:4].hex())


class RoundTripTest(unittest.TestCase):
    def setUp(self):
        self.vault = Vault(KEY)

    def test_round_trip(self):
        stored = self.vault.encrypt("item-1", "access-sandbox-abc")
        self.assertTrue(stored.startswith("v1:" + self.vault.key_id + ":"))
        self.assertNotIn("=", stored)
        self.assertEqual(self.vault.decrypt("item-1", stored), "access-sandbox-abc")

    def test_nonce_is_fresh(self):
        a = self.vault.encrypt("item-1", "access-sandbox-abc")
        b = self.vault.encrypt("item-1", "access-sandbox-abc")
        self.assertNotEqual(a, b)
        nonce_a = base64.urlsafe_b64decode(a.split(":")[2] + "==")[:12]
        nonce_b = base64.urlsafe_b64decode(b.split(":")[2] + "==")[:12]
        self.assertNotEqual(nonce_a, nonce_b)

    def test_empty_arguments_are_refused(self):
        with self.assertRaises(ValueError):
            self.vault.encrypt("", "access-sandbox-abc")
        with self.assertRaises(ValueError):
            self.vault.encrypt("item-1", "")
        with self.assertRaises(ValueError):
            self.vault.decrypt("", self.vault.encrypt("item-1", "access-sandbox-abc"))


class RotationTest(unittest.TestCase):
    def test_previous_keys_decrypt_current_key_encrypts(self):
        old = Vault(OLD_KEY)
        old_stored = old.encrypt("item-1", "access-sandbox-old")
        rotated = Vault(KEY, [OLD_KEY])
        self.assertEqual(rotated.key_id, Vault(KEY).key_id)
        self.assertEqual(rotated.decrypt("item-1", old_stored), "access-sandbox-old")
        self.assertTrue(rotated.needs_reencrypt(old_stored))
        new_stored = rotated.encrypt("item-1", "access-sandbox-old")
        self.assertFalse(rotated.needs_reencrypt(new_stored))
        # The old key alone no longer reads what the rotated vault writes.
        with self.assertRaises(UnknownKeyError):
            old.decrypt("item-1", new_stored)

    def test_dropped_previous_key_is_unknown(self):
        old_stored = Vault(OLD_KEY).encrypt("item-1", "access-sandbox-old")
        with self.assertRaises(UnknownKeyError):
            Vault(KEY).decrypt("item-1", old_stored)

    def test_duplicate_and_blank_keys_are_one_key(self):
        vault = Vault(KEY, [KEY, "", OLD_KEY, OLD_KEY])
        self.assertEqual(len(vault._keys), 2)

    def test_needs_reencrypt_on_other_formats(self):
        vault = Vault(KEY)
        for stored in ["access-sandbox-plain", "Z0FBQUFBQnJD", "", "v1:XYZ:abc"]:
            with self.subTest(stored=stored):
                self.assertTrue(vault.needs_reencrypt(stored))


class FromEnvTest(unittest.TestCase):
    def test_reads_the_service_variables(self):
        vault = Vault.from_env({
            "TOKEN_ENCRYPTION_KEY": KEY,
            "TOKEN_ENCRYPTION_KEY_PREVIOUS": f" {OLD_KEY} ,, ",
            "TOKEN_ENCRYPTION_SALT": "",
        })
        self.assertEqual(vault.key_id, Vault(KEY).key_id)
        self.assertEqual(vault.decrypt("i", Vault(OLD_KEY).encrypt("i", "access-x")), "access-x")

    def test_custom_salt_changes_the_key(self):
        self.assertNotEqual(Vault.from_env({"TOKEN_ENCRYPTION_KEY": KEY, "TOKEN_ENCRYPTION_SALT": "other"}).key_id,
                            Vault(KEY).key_id)

    def test_refuses_what_the_service_refuses_at_start(self):
        for env in [{}, {"TOKEN_ENCRYPTION_KEY": ""}, {"TOKEN_ENCRYPTION_KEY": "x" * 31}]:
            with self.subTest(env=env):
                with self.assertRaises(KeyConfigError):
                    Vault.from_env(env)
        with self.assertRaises(KeyConfigError):
            Vault("")


class RefusalTest(unittest.TestCase):
    """Every refusal of lifecycle/vault.go, each with the same class."""

    @classmethod
    def setUpClass(cls):
        cls.vault = Vault(KEY)
        cls.token = "access-sandbox-secret-0001"
        cls.good = cls.vault.encrypt("item-1", cls.token)
        cls.kid = cls.vault.key_id
        cls.payload = cls.good.split(":")[2]

    def flip(self, i):
        chars = list(self.payload)
        chars[i] = "A" if chars[i] != "A" else "B"
        return f"v1:{self.kid}:" + "".join(chars)

    def test_refusals(self):
        other_key = Vault(OLD_KEY).encrypt("item-1", self.token)
        cases = [
            ("moved to another item", "item-2", self.good, DecryptError),
            ("tampered payload", "item-1", self.flip(20), DecryptError),
            ("tampered tag", "item-1", self.flip(len(self.payload) - 6), DecryptError),
            ("truncated", "item-1", self.good[:-4], DecryptError),
            ("unknown key id", "item-1", other_key, UnknownKeyError),
            ("empty", "item-1", "", MalformedTokenError),
            ("another version", "item-1", "v2" + self.good[2:], MalformedTokenError),
            ("no key id separator", "item-1", "v1:" + self.kid, MalformedTokenError),
            ("uppercase key id", "item-1", f"v1:{self.kid.upper()}:{self.payload}", MalformedTokenError),
            ("short key id", "item-1", f"v1:{self.kid[:7]}:{self.payload}", MalformedTokenError),
            ("empty payload", "item-1", f"v1:{self.kid}:", MalformedTokenError),
            ("padded payload", "item-1", self.good + "=", MalformedTokenError),
            ("line break in payload", "item-1", self.good[:20] + "\n" + self.good[20:], MalformedTokenError),
            ("standard alphabet", "item-1", f"v1:{self.kid}:" + "+/" + self.payload[2:], MalformedTokenError),
            ("payload shorter than nonce and tag", "item-1", f"v1:{self.kid}:" + "A" * 36, MalformedTokenError),
            ("plaintext token", "item-1", self.token, MalformedTokenError),
        ]
        for name, item_id, stored, want in cases:
            with self.subTest(name):
                with self.assertRaises(want) as ctx:
                    self.vault.decrypt(item_id, stored)
                self.assertIsInstance(ctx.exception, TokenError)
                # Never the token or the ciphertext in a message.
                self.assertNotIn(self.token, str(ctx.exception))
                self.assertNotIn(self.payload[:16], str(ctx.exception))

    def test_non_canonical_last_character(self):
        # A payload has exactly one accepted spelling: stray bits in its
        # last character are refused, as Go's Strict() decoder does.
        vault = Vault(KEY)
        for n in range(1, 6):
            stored = vault.encrypt("item-1", "access-" + "x" * n)
            payload = stored.split(":")[2]
            if len(payload) % 4 == 0:
                continue
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            last = alphabet[alphabet.index(payload[-1]) | 1]
            with self.subTest(n=n):
                with self.assertRaises(MalformedTokenError):
                    vault.decrypt("item-1", stored[:-1] + last)
                return
        self.fail("no payload length with stray bits found")

    def test_mutations_raise_token_errors_only(self):
        # Never a crash: every mutation of a valid string either decrypts to
        # the token (it cannot, but for a no-op edit) or raises a TokenError.
        import random
        rng = random.Random(20)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:=+/ \n\x00é"
        for _ in range(2000):
            s = list(self.good)
            for _ in range(rng.randint(1, 3)):
                op = rng.randrange(3)
                i = rng.randrange(len(s) + 1)
                if op == 0 and s:
                    del s[min(i, len(s) - 1)]
                elif op == 1:
                    s.insert(i, rng.choice(alphabet))
                elif s:
                    s[min(i, len(s) - 1)] = rng.choice(alphabet)
            stored = "".join(s)
            try:
                self.assertEqual(self.vault.decrypt("item-1", stored), self.token)
            except TokenError:
                pass

    def test_not_a_string(self):
        with self.assertRaises(MalformedTokenError):
            self.vault.decrypt("item-1", None)


if __name__ == "__main__":
    unittest.main()
