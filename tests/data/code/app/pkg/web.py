"""Fixture: TLS verification turned off, and a weak hash."""

import hashlib

import requests


def fetch(url):
    return requests.get(url, verify=False, timeout=10)


def checksum(data):
    return hashlib.md5(data).hexdigest()
