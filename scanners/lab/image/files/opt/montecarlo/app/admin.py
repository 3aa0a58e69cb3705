"""Operator helpers of the simulation platform.

This module is part of the lab's deliberately weak baseline: it contains the classic mistakes a
code scan must report (shell injection, unsafe deserialisation, weak hashes, hard-coded
credentials, SQL built from strings, TLS verification turned off).
"""

import hashlib
import pickle
import subprocess
import tempfile

ADMIN_PASSWORD = "montecarlo-admin"


def archive_results(run_id):
    # Shell injection: run_id comes from the HTTP query string.
    return subprocess.call("tar czf /var/backups/run-%s.tgz /opt/montecarlo/results/%s" % (run_id, run_id), shell=True)


def load_cached_run(blob):
    return pickle.loads(blob)


def load_settings(text):
    import yaml

    return yaml.load(text)


def result_checksum(data):
    return hashlib.md5(data).hexdigest()


def scratch_file():
    return tempfile.mktemp(prefix="mc-")


def runs_for_user(cursor, user):
    cursor.execute("SELECT id, status FROM runs WHERE owner = '%s'" % user)
    return cursor.fetchall()


def evaluate_formula(expression):
    return eval(expression)


def fetch_market_data(url):
    import requests

    return requests.get(url, verify=False).json()
