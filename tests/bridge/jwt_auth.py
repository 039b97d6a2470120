"""Decentralised (JWT) NATS auth for the bridge tests: an operator, accounts and users made here, in Python.

nats-server in operator mode trusts an operator JWT; the operator signs account JWTs (preloaded into
the server's MEMORY resolver); an account signs user JWTs; a ``.creds`` file holds a user JWT and the
user's nkey seed. Test keys only: every key is fresh and random, made by :func:`nkey`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import time
from typing import Any

import nkeys

OPERATOR, ACCOUNT, USER = nkeys.PREFIX_BYTE_OPERATOR, nkeys.PREFIX_BYTE_ACCOUNT, nkeys.PREFIX_BYTE_USER
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
              "conn": -1, "leaf": -1}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def nkey(prefix: int) -> Any:
    """A fresh random nkey pair of one role (OPERATOR, ACCOUNT or USER)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def public(kp: Any) -> str:
    return kp.public_key.decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(issuer: Any, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A JWT with ``nats`` claims for ``subject``, signed by the ``issuer`` nkey (``jti``: sha256 of the claims)."""
    claims: dict[str, Any] = {"jti": "", "iat": int(time.time()), "iss": public(issuer), "name": name,
                              "sub": subject, "nats": {**nats, "version": 2}}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).rstrip(b"=").decode()
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


class Operator:
    """An operator with a system account and one JetStream-enabled account ``APP``; it issues users of APP."""

    def __init__(self, name: str = "OP"):
        self.key, self.system, self.app = nkey(OPERATOR), nkey(ACCOUNT), nkey(ACCOUNT)
        self.jwt = sign_jwt(self.key, public(self.key), name,
                            {"type": "operator", "system_account": public(self.system)})
        self.accounts = {
            public(self.system): sign_jwt(self.key, public(self.system), "SYS",
                                          {"type": "account", "limits": dict(_UNLIMITED)}),
            public(self.app): sign_jwt(self.key, public(self.app), "APP",
                                       {"type": "account", "limits": {**_UNLIMITED, **_JETSTREAM}}),
        }

    def write_config(self, path: pathlib.Path) -> pathlib.Path:
        """A nats-server config: operator mode, its MEMORY resolver preloaded with the accounts (for
        LocalNatsServer's ``config_path``, whose flags add JetStream, its store, address and port)."""
        preload = "\n".join(f"  {k}: {v}" for k, v in self.accounts.items())
        path.write_text(
            f"operator: {self.jwt}\nsystem_account: {public(self.system)}\nresolver: MEMORY\n"
            f"resolver_preload: {{\n{preload}\n}}\n"
        )
        return path

    def user_creds(self, path: pathlib.Path, name: str = "bridge") -> pathlib.Path:
        """A ``.creds`` file for a new user of account APP."""
        return write_creds(path, self.app, name)


def write_creds(path: pathlib.Path, account: Any, name: str) -> pathlib.Path:
    """A ``.creds`` file for a new user ``name`` issued by the ``account`` nkey."""
    user = nkey(USER)
    jwt = sign_jwt(account, public(user), name,
                   {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    path.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
    os.chmod(path, 0o600)
    return path
