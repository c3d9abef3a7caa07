#!/usr/bin/env python3
"""Crash safety (issue #11): `kill -9` at a random moment of convert, quantize, merge and train
leaves either no output or the previous complete one under the final name, never a partial one;
the next run that writes to the same place removes the killed run's temporaries.

  python3 tests/hostile/kill_test.py --anvil build/tools/anvil --shared ../shared [--rounds N] [--seed S]

anvil's outputs are deterministic, so "complete" is checked exactly: after every kill, each final
path is absent or byte-identical to an uninterrupted run's (a previous output, or the new one).
Python 3 standard library only; exits 1 on any violation.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def content(path):
    """A file's bytes; a training checkpoint's state without the wall-clock fields (the only
    part of anvil's outputs that differs between two runs)."""
    with open(path, "rb") as f:
        data = f.read()
    if os.path.basename(path) == "trainer_state.json":
        state = json.loads(data)
        for entry in state.get("log", []):
            entry.pop("tokens_per_second", None)
            entry.pop("elapsed_seconds", None)
        data = json.dumps(state, sort_keys=True).encode()
    return data


def digest(path):
    """A hash of a file, or of a directory tree (names and contents); None when absent."""
    if not os.path.exists(path):
        return None
    h = hashlib.sha256()
    if os.path.isfile(path):
        h.update(content(path))
        return h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            h.update(content(full))
    return h.hexdigest()


def temporaries(parent, final_name):
    prefix = "." + final_name + ".tmp-"
    return sorted(n for n in os.listdir(parent) if n.startswith(prefix)) if os.path.isdir(parent) else []


class Job:
    """One command whose outputs are `finals` (paths); `previous` makes a different complete output
    at the same paths first (None: start from nothing)."""

    def __init__(self, name, argv, finals, previous=None, env=None):
        self.name, self.argv, self.finals, self.previous, self.env = name, argv, finals, previous, env


def run(argv, env=None, timeout=300):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env)
    if r.returncode != 0:
        raise SystemExit("command failed (%d): %s\n%s" % (r.returncode, " ".join(argv), r.stdout.decode()[-2000:]))


def clear(paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def check_job(job, rounds, rng, failures):
    # Reference digests: the complete new output, and (if any) the complete previous one.
    clear(job.finals)
    t0 = time.monotonic()
    run(job.argv, job.env)
    duration = time.monotonic() - t0
    new = {p: digest(p) for p in job.finals}
    old = {p: None for p in job.finals}
    if job.previous:
        clear(job.finals)
        run(job.previous, job.env)
        old = {p: digest(p) for p in job.finals}
    kills = 0
    for i in range(rounds):
        clear(job.finals)
        with_previous = job.previous is not None and i % 2 == 1
        if with_previous:
            run(job.previous, job.env)
        proc = subprocess.Popen(job.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=job.env)
        time.sleep(rng.uniform(0.0, duration * 1.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        for p in job.finals:
            got = digest(p)
            allowed = {new[p], old[p] if with_previous else None}
            if got not in allowed:
                failures.append("%s round %d: %s is partial (neither absent, the previous output nor the new one)"
                                % (job.name, i, p))
    # The next complete run removes what the killed ones left behind and writes the new output.
    run(job.argv, job.env)
    for p in job.finals:
        left = temporaries(os.path.dirname(p), os.path.basename(p))
        if left:
            failures.append("%s: temporaries of killed runs left beside %s: %s" % (job.name, p, ", ".join(left)))
        if digest(p) != new[p]:
            failures.append("%s: the run after the kills did not write the complete output %s" % (job.name, p))
    return kills, duration


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--anvil", required=True)
    ap.add_argument("--shared", required=True, help="the shared fixtures directory (ANVIL_SHARED overrides it)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    args.shared = os.environ.get("ANVIL_SHARED") or args.shared
    anvil = os.path.abspath(args.anvil)
    models = os.path.join(os.path.abspath(args.shared), "models")
    data = os.path.join(os.path.abspath(args.shared), "data")
    rng = random.Random(args.seed)
    env = dict(os.environ, ANVIL_NO_PROGRESS="1")
    work = tempfile.mkdtemp(prefix="anvil-kill-")
    try:
        gguf = os.path.join(work, "base.gguf")
        merged = os.path.join(work, "merged")
        with open(os.path.join(work, "linear.yaml"), "w") as f:
            f.write("merge_method: linear\nmodels:\n  - model: %s/ft-fortune\n    parameters: {weight: 0.5}\n"
                    "  - model: %s/ft-changelog\n    parameters: {weight: 0.5}\ndtype: bfloat16\n" % (models, models))
        with open(os.path.join(work, "ties.yaml"), "w") as f:
            f.write("merge_method: task_arithmetic\nbase_model: %s/base\nmodels:\n  - model: %s/ft-fortune\n"
                    "    parameters: {weight: 0.7}\n  - model: %s/ft-changelog\n    parameters: {weight: 0.7}\n"
                    "dtype: bfloat16\n" % (models, models, models))
        out = os.path.join(work, "train-out")
        with open(os.path.join(work, "r.yaml"), "w") as f:
            f.write("base_model: %s/base\noutput_dir: %s\ndatasets: [{path: %s/fortune.train.txt, type: raw}]\n"
                    "sequence_len: 32\nmicro_batch_size: 4\nmax_steps: 6\nsave_steps: 2\nthreads: 1\nseed: 7\n"
                    "lora: {r: 4, target_modules: [q_proj, v_proj]}\n" % (models, out, data))
        jobs = [
            Job("convert", [anvil, "convert", models + "/base", "-o", gguf, "--type", "f16"], [gguf],
                previous=[anvil, "convert", models + "/base", "-o", gguf, "--type", "q8_0"], env=env),
            Job("quantize", [anvil, "quantize", models + "/base", "-o", gguf, "--type", "Q4_K_M"], [gguf],
                previous=[anvil, "quantize", models + "/base", "-o", gguf, "--type", "Q6_K"], env=env),
            Job("merge", [anvil, "merge", os.path.join(work, "linear.yaml"), "-o", merged], [merged],
                previous=[anvil, "merge", os.path.join(work, "ties.yaml"), "-o", merged], env=env),
            # train: the adapter files and each checkpoint directory are the outputs; log.jsonl and
            # loss.svg are progress records and may stop at any step.
            Job("train", [anvil, "train", os.path.join(work, "r.yaml")],
                [os.path.join(out, n) for n in ("adapter_model.safetensors", "adapter_config.json", "checkpoint-2",
                                                "checkpoint-4", "checkpoint-6")], env=env),
        ]
        failures = []
        for job in jobs:
            kills, duration = check_job(job, args.rounds, rng, failures)
            print("%-9s %d rounds, %d killed mid-run (a full run takes %.2f s)" % (job.name, args.rounds, kills, duration))
        for f in failures:
            print("FAIL " + f)
        print("seed %d: %d failures" % (args.seed, len(failures)))
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
