#!/usr/bin/env python3
"""Summarize an Autobahn|Testsuite fuzzingclient run against wsloop, and compare it with
the committed expected-results.json.

Usage:
  python3 autobahn/summarize.py [--reports DIR] [--expected FILE]
  python3 autobahn/summarize.py --write-expected [--reports DIR] [--expected FILE]

DIR defaults to autobahn/reports (wstest's outdir: index.json plus one <agent>_case_*.json per
case); FILE defaults to autobahn/expected-results.json. Python 3 standard library only.

Verdict rule (per case):
  ok            both `behavior` and `behaviorClose` are OK or INFORMATIONAL.
  unimplemented the case id starts with "12." or "13." (permessage-deflate) and `behavior` is
                UNIMPLEMENTED: wstest's way of saying the server did not negotiate compression.
  non-strict    not ok, and every column that is not OK/INFORMATIONAL is exactly NON-STRICT.
  failed        everything else: FAILED, UNIMPLEMENTED outside 12/13, NO CLOSE, WRONG CODE,
                UNCLEAN, FAILED BY CLIENT, or any value we do not know.
Non-strict and failed cases are both failures (exit status 1).

Output: every failing case (id, behavior, behaviorClose, remote close code, description), a
Markdown table of the 9.* (limits/performance) cases with their duration in ms, every
difference from expected-results.json, and LAST the line
  autobahn: N cases, N ok, N non-strict, N failed, N unimplemented

Exit status: 0 only if at least one case ran, no case is non-strict or failed, and every case
that ran matches expected-results.json (when that file exists). When the run covered every case
(the spec in DIR/spec.json selects "*" and excludes nothing, or there is no spec), a case in
expected-results.json that did not run is a difference too; after a subset run
(AUTOBAHN_CASES / AUTOBAHN_EXCLUDE) only the cases that ran are compared.

--no-deflate (autobahn/run-client.sh with AUTOBAHN_CLIENT_DEFLATE=0) compares 12.* and 13.* with
UNIMPLEMENTED/OK instead of what FILE says: without an offer they cannot run.

--write-expected writes FILE from the current reports instead of comparing (after a subset run
it updates only the cases that ran and keeps the others). FILE keeps only behavior and
behaviorClose per case (durations vary run to run), keys sorted, one case per line.
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OK_VALUES = ("OK", "INFORMATIONAL")
DEFLATE_PREFIXES = ("12.", "13.")  # permessage-deflate cases; compression is optional


def case_key(case_id):
    """Numeric order: 1.1.2 before 1.1.10."""
    return tuple(int(p) if p.isdigit() else 0 for p in case_id.split("."))


def classify(case_id, behavior, behavior_close):
    """Return "ok", "unimplemented", "non-strict" or "failed" (see the module docstring)."""
    if behavior in OK_VALUES and behavior_close in OK_VALUES:
        return "ok"
    if case_id.startswith(DEFLATE_PREFIXES) and behavior == "UNIMPLEMENTED":
        return "unimplemented"
    not_ok = [v for v in (behavior, behavior_close) if v not in OK_VALUES]
    if all(v == "NON-STRICT" for v in not_ok):
        return "non-strict"
    return "failed"


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_cases(reports):
    """Return {case_id: index entry} from reports/index.json (all agents merged)."""
    index = load_json(os.path.join(reports, "index.json"))
    if len(index) > 1:
        print("warning: index.json has %d agents (%s); merging them"
              % (len(index), ", ".join(sorted(index))), file=sys.stderr)
    cases = {}
    for agent_cases in index.values():
        cases.update(agent_cases)
    return cases


def is_full_run(reports):
    """True unless reports/spec.json (written by run.sh) selects a subset of the cases."""
    try:
        spec = load_json(os.path.join(reports, "spec.json"))
    except (OSError, ValueError):
        return True
    return spec.get("cases") == ["*"] and not spec.get("exclude-cases")


def case_details(reports, entry):
    """The case's own report (description, expectation, ...), or {} if unreadable."""
    try:
        return load_json(os.path.join(reports, entry["reportfile"]))
    except (OSError, ValueError, KeyError):
        return {}


def one_line(html, width=100):
    """wstest descriptions contain HTML tags and line breaks; flatten and shorten them."""
    text = " ".join(re.sub(r"<[^>]+>", " ", html or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def short_nine(desc):
    """Squeeze a 9.* description into a table cell, keeping the sizes (the part that matters)."""
    for pattern, repl in ((r"^Send ", ""), (r"message message", "message"),
                          (r"with (message )?payload of length ", "of "),
                          (r" to measure implementation/network RTT.*$", ""),
                          (r"\. Sent out (data )?in ", ", in ")):
        desc = re.sub(pattern, repl, desc)
    return desc


def pair(entry, missing="nothing"):
    if entry is None:
        return missing
    return "%s/%s" % (entry.get("behavior"), entry.get("behaviorClose"))


def show_path(path):
    """Relative to the current directory when under it (shorter messages), else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def write_expected(path, results):
    """One case per line, keys sorted: small diffs when a case changes."""
    lines = ['  %s: {"behavior": %s, "behaviorClose": %s}'
             % (json.dumps(cid), json.dumps(r["behavior"]), json.dumps(r["behaviorClose"]))
             for cid, r in sorted(results.items())]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", default=os.path.join(HERE, "reports"),
                    help="wstest outdir holding index.json (default: autobahn/reports)")
    ap.add_argument("--expected", default=os.path.join(HERE, "expected-results.json"),
                    help="expected results file (default: autobahn/expected-results.json)")
    ap.add_argument("--write-expected", action="store_true",
                    help="write the expected results from the current reports instead of comparing")
    ap.add_argument("--no-deflate", action="store_true",
                    help="the run did not offer/accept permessage-deflate: expect 12.* and 13.* "
                         "to be UNIMPLEMENTED/OK whatever FILE says")
    args = ap.parse_args()

    try:
        cases = load_cases(args.reports)
    except (OSError, ValueError) as e:
        print("no usable report: %s" % e)
        cases = {}
    ids = sorted(cases, key=case_key)
    verdicts = {cid: classify(cid, cases[cid].get("behavior"), cases[cid].get("behaviorClose"))
                for cid in ids}

    # 1. Failing cases, with what the server did (close code) and what the case is about.
    failing = [cid for cid in ids if verdicts[cid] in ("non-strict", "failed")]
    if failing:
        print("failing cases (%d):" % len(failing))
        for cid in failing:
            e = cases[cid]
            details = case_details(args.reports, e)
            print("  %-8s %-13s behavior=%-13s behaviorClose=%-16s closeCode=%-5s %s" % (
                cid, verdicts[cid].upper(), e.get("behavior"), e.get("behaviorClose"),
                e.get("remoteCloseCode"), one_line(details.get("description"))))
            # wstest's own one-line reasons, e.g. "The close code should have been 1002 or empty".
            if details.get("result") or details.get("resultClose"):
                print("  %-8s result: %s | close: %s" % (
                    "", one_line(details.get("result"), 80), one_line(details.get("resultClose"), 80)))
        print()

    # 2. The 9.* cases (big messages, many fragments): their durations are the interesting part.
    nine = [cid for cid in ids if cid.startswith("9.")]
    if nine:
        print("9.* timings:")
        print()
        print("| case | ms | result | description |")
        print("| --- | ---: | --- | --- |")
        for cid in nine:
            e = cases[cid]
            desc = short_nine(one_line(case_details(args.reports, e).get("description"), 200))
            print("| %s | %s | %s | %s |" % (cid, e.get("duration"), pair(e), desc))
        print()

    # 3. Compare with (or write) expected-results.json.
    differences = []
    current = {cid: {"behavior": cases[cid].get("behavior"),
                     "behaviorClose": cases[cid].get("behaviorClose")} for cid in ids}
    full = is_full_run(args.reports)
    if args.write_expected:
        if not ids:
            print("not writing %s: no case ran" % show_path(args.expected))
        else:
            merged = {}
            if not full and os.path.exists(args.expected):
                merged = load_json(args.expected)  # subset run: keep the cases that did not run
            merged.update(current)
            write_expected(args.expected, merged)
            print("wrote %s (%d cases%s)" % (show_path(args.expected), len(merged),
                                              "" if full else ", %d from this run" % len(ids)))
    elif not ids:
        print("no case ran: nothing to compare with %s" % show_path(args.expected))
    elif os.path.exists(args.expected):
        expected = load_json(args.expected)
        if args.no_deflate:
            for cid in expected:
                if cid.startswith(DEFLATE_PREFIXES):
                    expected[cid] = {"behavior": "UNIMPLEMENTED", "behaviorClose": "OK"}
        compare = set(ids) | (set(expected) if full else set())
        for cid in sorted(compare, key=case_key):
            if expected.get(cid) != current.get(cid):
                differences.append("case %s: expected %s, got %s"
                                   % (cid, pair(expected.get(cid), "nothing (no entry)"),
                                      pair(current.get(cid), "nothing (the case did not run)")))
        print("compared %d cases with %s%s: %d differ" % (
            len(compare), show_path(args.expected),
            "" if full else " (subset run: only the cases that ran)", len(differences)))
        for d in differences:
            print("  " + d)
    else:
        print("no %s yet: nothing to compare (write it with --write-expected)"
              % show_path(args.expected))

    # 4. The one-line summary, always last.
    count = {v: sum(1 for x in verdicts.values() if x == v)
             for v in ("ok", "non-strict", "failed", "unimplemented")}
    print("autobahn: %d cases, %d ok, %d non-strict, %d failed, %d unimplemented" % (
        len(ids), count["ok"], count["non-strict"], count["failed"], count["unimplemented"]))

    if not ids:
        return 1
    if args.write_expected:
        return 0
    return 1 if (failing or differences) else 0


if __name__ == "__main__":
    sys.exit(main())
