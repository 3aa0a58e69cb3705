"""Fixture: code that handles secrets properly. The secrets scanner must report nothing here."""

import os

DB_PASSWORD = os.environ["DB_PASSWORD"]
API_URL = "https://api.example.invalid/v1"
RUN_ID = "00000000-0000-0000-0000-000000000000"
