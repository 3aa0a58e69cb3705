"""Fixture: obviously fake credentials in every known format (tests/unit/test_secrets_scanner.py)."""

AWS_ACCESS_KEY_ID = "AKIAFAKEPREAUDIT0001"
GITHUB_TOKEN = "ghp_FAKEpreauditFIXTURE00000000000000000"
SLACK_TOKEN = "xoxb-000000000000-000000000000-FAKEpreauditFIXTURE00000"
SESSION_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYWtlLXByZWF1ZGl0LWZpeHR1cmUiLCJpYXQiOjE3MDAwMDAwMDB9.ZmFrZS1zaWduYXR1cmUtbm90LWEtcmVhbC1vbmU"
DB_PASSWORD = "fake-Fixture-Passw0rd-1"
