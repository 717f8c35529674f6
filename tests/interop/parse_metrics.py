#!/usr/bin/env python3
"""Fetches a /metrics page and parses it with prometheus_client's own text parser: a format
error fails (exit 1); otherwise prints every sample as one JSON line [name, labels, value],
then OK.

Usage: python3 tests/interop/parse_metrics.py http://127.0.0.1:PORT/metrics
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as resp:
        ctype = resp.headers.get("Content-Type", "")
        text = resp.read().decode("utf-8")
    if not ctype.startswith("text/plain"):
        print(f"FAIL: Content-Type {ctype!r}", file=sys.stderr)
        return 1
    families = 0
    try:
        for family in text_string_to_metric_families(text):
            families += 1
            if not family.documentation:
                print(f"FAIL: {family.name} has no HELP", file=sys.stderr)
                return 1
            for s in family.samples:
                print(json.dumps([s.name, s.labels, s.value], sort_keys=True))
    except Exception as e:  # the parser's own complaint about the format
        print(f"FAIL: not valid Prometheus text: {e}", file=sys.stderr)
        return 1
    if families == 0:
        print("FAIL: no metric families", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
