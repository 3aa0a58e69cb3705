"""Fixture for tests/unit/test_code_scanner.py: each flagged line is asserted exactly."""

import pickle
import subprocess


def run(name):
    return subprocess.call("echo " + name, shell=True)


def load(blob):
    return pickle.loads(blob)


def calc(expression):
    return eval(expression)
