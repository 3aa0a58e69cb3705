"""HS256 JSON Web Tokens for API clients (stdlib only: the simulation hosts are offline)."""

import base64
import hashlib
import hmac
import json
import time


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret, subject, ttl=3600):
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": subject, "exp": int(time.time()) + ttl}).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = _b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


def verify(secret, token):
    try:
        header, claims, signature = token.split(".")
    except ValueError:
        return None
    expected = _b64(hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    payload = json.loads(_unb64(claims))
    if payload.get("exp", 0) < time.time():
        return None
    return payload
