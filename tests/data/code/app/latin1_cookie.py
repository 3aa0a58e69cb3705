# -*- coding: latin-1 -*-
"""Fixture: Latin-1 with its coding cookie: valid, and scanned."""
NAME = "café"


def calc(expression):
    return eval(expression)
