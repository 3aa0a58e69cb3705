"""Monte Carlo estimators used by the simulation service."""

import math
import random


def estimate_pi(samples, seed):
    rng = random.Random(seed)
    inside = 0
    for _ in range(samples):
        x = rng.random()
        y = rng.random()
        if x * x + y * y <= 1.0:
            inside += 1
    p = inside / samples
    return {
        "estimate": 4.0 * p,
        "stderr": 4.0 * math.sqrt(p * (1.0 - p) / samples),
        "samples": samples,
        "seed": seed,
    }


def black_scholes_call(spot, strike, rate, vol, maturity):
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * maturity) / (vol * math.sqrt(maturity))
    d2 = d1 - vol * math.sqrt(maturity)
    cdf = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # noqa: E731
    return spot * cdf(d1) - strike * math.exp(-rate * maturity) * cdf(d2)


def price_european_call(spot, strike, rate, vol, maturity, paths, seed):
    rng = random.Random(seed)
    drift = (rate - 0.5 * vol * vol) * maturity
    diffusion = vol * math.sqrt(maturity)
    discount = math.exp(-rate * maturity)
    total = 0.0
    total_sq = 0.0
    for _ in range(paths):
        z = rng.gauss(0.0, 1.0)
        payoff = max(spot * math.exp(drift + diffusion * z) - strike, 0.0)
        total += payoff
        total_sq += payoff * payoff
    mean = total / paths
    variance = max(total_sq / paths - mean * mean, 0.0)
    return {
        "price": discount * mean,
        "stderr": discount * math.sqrt(variance / paths),
        "analytic": black_scholes_call(spot, strike, rate, vol, maturity),
        "paths": paths,
        "seed": seed,
    }
