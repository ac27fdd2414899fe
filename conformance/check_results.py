#!/usr/bin/env python3
"""Judge one run of the OCI conformance suite from the files it wrote.

The suite's exit code cannot be trusted (it exits 0 on setup errors), so
this reads RESULTS_DIR/junit.xml and RESULTS_DIR/results.yaml and fails
unless:

  - junit.xml has at least one testcase and every testcase passed;
  - the suite totals show zero failures and zero errors;
  - every API and data-set summary in results.yaml is "Pass", except the
    data sets named with --allow-disabled, which must be "Disabled".

Prints `LABEL: N passed, N failed, N skipped, N disabled`, lists every
non-passing testcase with the suite's own message, and writes the four
numbers to RESULTS_DIR/counts.

Usage: check_results.py RESULTS_DIR LABEL [--allow-disabled "Data Set Name"]...
"""

import argparse
import os
import sys
import xml.etree.ElementTree as ET

import yaml


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("results_dir")
    parser.add_argument("label")
    parser.add_argument("--allow-disabled", action="append", default=[])
    args = parser.parse_args()

    problems = []
    junit_path = os.path.join(args.results_dir, "junit.xml")
    yaml_path = os.path.join(args.results_dir, "results.yaml")
    for path in (junit_path, yaml_path):
        if not os.path.isfile(path):
            print(f"{args.label}: missing {path}; the suite did not run")
            return 1

    root = ET.parse(junit_path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    cases = [case for suite in suites for case in suite.findall("testcase")]
    passed = failed = skipped = 0
    for case in cases:
        status = case.get("status", "")
        if status == "passed":
            passed += 1
            continue
        if status == "skipped":
            skipped += 1
        else:
            failed += 1
        detail = (case.findtext("system-out") or "").strip().replace("\n", " | ")
        problems.append(f"{status.upper():8} {case.get('name')}: {detail[:600]}")
    for suite in suites:
        for attr in ("failures", "errors"):
            if int(suite.get(attr, "0")) != 0:
                problems.append(f"suite {suite.get('name')!r} reports {attr}={suite.get(attr)}")
    if not cases:
        problems.append("junit.xml holds no testcase")

    with open(yaml_path, encoding="utf-8") as fh:
        results = yaml.safe_load(fh)
    disabled = 0
    seen_allowed = set()
    for section in ("apis", "data"):
        summary = results.get(section) or {}
        if not summary:
            problems.append(f"results.yaml has no {section!r} summary")
        for name, status in summary.items():
            if status == "Disabled":
                disabled += 1
            if name in args.allow_disabled:
                seen_allowed.add(name)
                if status != "Disabled":
                    problems.append(f"{section}/{name}: {status}, expected Disabled in this pass")
            elif status != "Pass":
                problems.append(f"{section}/{name}: {status}")
    for name in set(args.allow_disabled) - seen_allowed:
        problems.append(f"data set {name!r} missing from results.yaml")

    shown = 80
    for line in problems[:shown]:
        print(f"  {line}")
    if len(problems) > shown:
        print(f"  ... and {len(problems) - shown} more; see {args.results_dir}/report.html")
    print(f"{args.label}: {passed} passed, {failed} failed, {skipped} skipped, {disabled} disabled")
    with open(os.path.join(args.results_dir, "counts"), "w", encoding="utf-8") as fh:
        fh.write(f"{passed} {failed} {skipped} {disabled}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
