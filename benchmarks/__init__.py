"""Speed and accuracy benchmarks, run by ``make bench`` (never by the tests)."""
