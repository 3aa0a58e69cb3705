"""The Monte Carlo simulation service: a small JSON API behind nginx.

It reads its secrets from the environment (systemd EnvironmentFile=/opt/montecarlo/.env):
DATABASE_URL, JWT_SECRET and API_KEY.
"""

import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import simulation
import tokens

VERSION = "1.4.2"
MAX_SAMPLES = 2_000_000


class Config:
    def __init__(self, env):
        missing = [k for k in ("DATABASE_URL", "JWT_SECRET", "API_KEY") if not env.get(k)]
        if missing:
            raise SystemExit("missing settings: " + ", ".join(missing))
        self.jwt_secret = env["JWT_SECRET"]
        self.api_key = env["API_KEY"]
        self.database_url = env["DATABASE_URL"]


def make_handler(config):
    class Handler(BaseHTTPRequestHandler):
        server_version = "montecarlo/" + VERSION

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self):
            key = self.headers.get("X-API-Key", "")
            if key and hmac.compare_digest(key, config.api_key):
                return True
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                return tokens.verify(config.jwt_secret, auth[7:]) is not None
            return False

        def _params(self, query, spec):
            values = {}
            for name, (kind, default, low, high) in spec.items():
                raw = query.get(name, [default])[0]
                value = kind(raw)
                if not low <= value <= high:
                    raise ValueError(f"{name} must be between {low} and {high}")
                values[name] = value
            return values

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/health":
                return self._send(200, {"status": "ok", "service": "montecarlo", "version": VERSION})
            if not self._authorised():
                return self._send(401, {"error": "unauthorised"})
            try:
                if url.path == "/simulate/pi":
                    p = self._params(query, {"samples": (int, 100000, 1, MAX_SAMPLES), "seed": (int, 1, 0, 2**31)})
                    return self._send(200, simulation.estimate_pi(p["samples"], p["seed"]))
                if url.path == "/price/european-call":
                    p = self._params(
                        query,
                        {
                            "spot": (float, 100.0, 0.01, 1e6),
                            "strike": (float, 100.0, 0.01, 1e6),
                            "rate": (float, 0.05, -1.0, 1.0),
                            "vol": (float, 0.2, 0.001, 5.0),
                            "maturity": (float, 1.0, 0.001, 50.0),
                            "paths": (int, 100000, 1, MAX_SAMPLES),
                            "seed": (int, 1, 0, 2**31),
                        },
                    )
                    return self._send(200, simulation.price_european_call(**p))
            except ValueError as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(404, {"error": "not found"})

        def do_POST(self):
            if urlparse(self.path).path != "/token":
                return self._send(404, {"error": "not found"})
            key = self.headers.get("X-API-Key", "")
            if not (key and hmac.compare_digest(key, config.api_key)):
                return self._send(401, {"error": "unauthorised"})
            return self._send(200, {"token": tokens.issue(config.jwt_secret, "api-client"), "type": "Bearer"})

    return Handler


def main():
    config = Config(os.environ)
    host = os.environ.get("BIND", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    ThreadingHTTPServer((host, port), make_handler(config)).serve_forever()


if __name__ == "__main__":
    main()
