"""Fixture: a reviewed hit suppressed with bandit's own nosec comment. No finding."""


def calc(expression):
    return eval(expression)  # nosec B307 - expression comes from the fixed table below
