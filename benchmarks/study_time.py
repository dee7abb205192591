"""Where a Snakemake run of the study spent its time, read from the run's own log.

Per rule: jobs, job-seconds (from Snakemake's start stamp to its "Finished" stamp, 1 s
resolution) and the part of them before the job's first log line and after its last one
(process start, imports and reading inputs; writing outputs, exit and Snakemake's own checks).
On a 2-core machine the study's wall time is about its job-seconds over 2.

    python benchmarks/study_time.py .snakemake/log/<run>.snakemake.log [--directory .] [--top 30]

Jobs whose log file is missing, has no time-stamped line or was since rewritten by a later run
count in job-seconds only.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import re
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
LOG = re.compile(r"^\s+log: (\S+)$")
JOB = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


def jobs_of(log_lines):
    """``(rule, started, finished, job log path or None)`` of every finished job."""
    stamp, rule, job_log, started = None, None, None, {}
    for line in log_lines:
        if match := STAMP.match(line):
            stamp = datetime.datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := RULE.match(line):
            rule, job_log = match.group(1), None
        elif (match := LOG.match(line)) and rule:
            job_log = match.group(1)
        elif (match := JOB.match(line)) and rule:
            started[match.group(1)] = (rule, stamp, job_log)
            rule = None
        elif (match := FINISHED.match(line)) and match.group(1) in started:
            name, start, path = started.pop(match.group(1))
            yield name, start, stamp, path


def overhead(start, finish, job_log: Path):
    """Seconds before the job's first time-stamped log line and after its last; None if unknown."""
    try:
        stamps = [datetime.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
                  for line in job_log.read_text().splitlines() if line[:4].isdigit()]
    except (OSError, ValueError):
        return None
    slack = datetime.timedelta(seconds=2)  # Snakemake's stamps have 1 s resolution
    if not stamps or stamps[0] < start - slack or stamps[-1] > finish + slack:
        return None  # no stamp, or the log of a later run of the same job
    return (stamps[0] - start).total_seconds(), (finish - stamps[-1]).total_seconds()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="the run's .snakemake/log/*.snakemake.log (or its console output)")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the run's working directory")
    parser.add_argument("--top", type=int, default=30, help="rules to list, most job-seconds first")
    args = parser.parse_args()
    seconds, jobs = collections.Counter(), collections.Counter()
    before, after = collections.Counter(), collections.Counter()
    for rule, start, finish, path in jobs_of(args.log.read_text().splitlines()):
        jobs[rule] += 1
        seconds[rule] += (finish - start).total_seconds()
        edges = overhead(start, finish, args.directory / path) if path else None
        if edges:
            before[rule] += edges[0]
            after[rule] += edges[1]
    total = sum(seconds.values())
    print(f"{sum(jobs.values())} jobs, {total:.0f} job-seconds; before the first log line "
          f"{sum(before.values()):.0f}, after the last {sum(after.values()):.0f}")
    print(f"{'rule':32s} {'jobs':>5s} {'job-s':>7s} {'before':>7s} {'after':>6s}")
    for rule, value in seconds.most_common(args.top):
        print(f"{rule:32s} {jobs[rule]:5d} {value:7.0f} {before[rule]:7.0f} {after[rule]:6.0f}")


if __name__ == "__main__":
    main()
