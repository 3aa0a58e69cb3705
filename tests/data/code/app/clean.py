"""Fixture: ordinary, safe code. The code scanner must report nothing here."""

import hashlib
import json


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse(text: str) -> dict:
    return json.loads(text)
