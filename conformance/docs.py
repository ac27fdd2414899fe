#!/usr/bin/env python3
"""The docs test: run every shell block of the user-facing docs as written.

A user follows README.md, docs/runner.md and docs/operations.md by pasting
their ```sh blocks into a shell, in order. This test does exactly that, one
bash session per file, so a command that stops working fails CI instead of
the next new user. What it runs:

- every ```sh block, in file order, in one `bash -euo pipefail` session per
  file (variables and `cd` carry over between blocks, as in a terminal);
- README.md from the repository root (its commands are `cargo ...` and
  `target/release/...`); the other files in a fresh temporary directory;
- with `target/release` and `.tools/bin` first on PATH (the docs say how to
  put the binaries there), the runner's state in a temporary
  STRATA_RUNNER_ROOT, client logins in temporary DOCKER_CONFIG and
  REGISTRY_AUTH_FILE, so nothing of the machine's own state is touched.

A line `<!-- docs-test: ... -->` right before a block's fence changes that:

    <!-- docs-test: skip REASON -->       not run here (say why: the internet,
                                          a terminal, a real CA); counted
    <!-- docs-test: background URL -->   a server: run in the background,
                                          wait until URL answers, go on

A line `cmd   # prints: TEXT` also checks that cmd's output contains TEXT.
Example paths are replaced by temporary ones (PLACEHOLDERS: /srv/strata).

Every process a file's session started is stopped (its process group) when
the file ends, also on failure. The summary names every block not run and
why; the exit status is 1 when any block failed or a file had no block.

Usage: python3 conformance/docs.py [FILE...]   (default: the three files)
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILES = ["README.md", "docs/runner.md", "docs/operations.md"]
PRINTS = re.compile(r"(.*\S)\s+# prints: (.+)")
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|background)\s*(.*?)\s*-->")
# A server may need a build first (`cargo run`): wait this long at most.
BACKGROUND_WAIT_SECS = 900
FILE_TIMEOUT_SECS = 1800
# Paths the docs use as examples, and where the test puts them instead.
PLACEHOLDERS = {"/srv/strata": "{work}/srv-strata"}


def log(msg):
    print(f"docs.py: {msg}", flush=True)


class Block:
    def __init__(self, path, line, code, mode="run", arg=""):
        self.path, self.line, self.code, self.mode, self.arg = path, line, code, mode, arg

    def where(self):
        return f"{self.path}:{self.line}"


def parse(path):
    """The ```sh blocks of one Markdown file, with their markers."""
    blocks, lines = [], (REPO / path).read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            lang, start, body = fence[3:].strip(), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            if lang == "sh":
                mode, arg = "run", ""
                prev = lines[start - 2].strip() if start >= 2 else ""
                m = MARKER.fullmatch(prev)
                if m:
                    mode, arg = m.group(1), m.group(2)
                blocks.append(Block(path, start, "\n".join(body) + "\n", mode, arg))
        i += 1
    return blocks


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc):
    """Stop a session's process group (its servers too): TERM, wait until the
    group is gone (so the next file may bind the same port), then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not group_alive(proc.pid):
            break
        os.killpg(proc.pid, sig)
        for _ in range(100):
            if proc.poll() is not None and not group_alive(proc.pid):
                break
            time.sleep(0.1)
    proc.wait()


def session_script(blocks):
    """One bash script for a file: its blocks in order, each announced on the
    output so a failure can be traced to its block."""
    out = [
        "set -euo pipefail",
        "__block() { printf '\\n@@docs-test block %s\\n' \"$1\"; }",
        # wait_url URL PID: until URL answers (any status below 500) or PID dies.
        # __free_url URL: nothing may answer there yet, or the test would talk to it.
        "__free_url() {",
        "  if curl -s -o /dev/null --max-time 2 \"$1\"; then",
        "    echo \"something already answers at $1: stop it, the docs start their own server there\" >&2; return 1",
        "  fi",
        "}",
        "__wait_url() {",
        f"  for _ in $(seq 1 {BACKGROUND_WAIT_SECS * 2}); do",
        "    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \"$1\" || true)",
        "    if [ \"${code:-000}\" != 000 ] && [ \"$code\" -lt 500 ]; then",
        "      kill -0 \"$2\" 2>/dev/null && return 0",
        "      echo \"the server exited; something else answers at $1\" >&2; return 1",
        "    fi",
        "    kill -0 \"$2\" 2>/dev/null || { echo \"server exited before $1 answered\" >&2; return 1; }",
        "    sleep 0.5",
        "  done",
        "  echo \"$1 did not answer\" >&2; return 1",
        "}",
        # __expect OUTPUT TEXT: the docs said this command prints TEXT.
        "__expect() { case \"$1\" in *\"$2\"*) ;; *) echo \"expected output: $2\" >&2; return 1 ;; esac; }",
    ]
    for n, block in enumerate(blocks):
        if block.mode == "skip":
            continue
        out.append(f"__block {n}")
        if block.mode == "background":
            # The docs show `server ... &`; the test backgrounds it itself.
            code = block.code.rstrip().removesuffix("&")
            url = sh_quote(block.arg)
            out += [f"__free_url {url}", "{", code, "} &", f"__wait_url {url} $!"]
        else:
            out += [expect_prints(line) for line in block.code.splitlines()]
    out.append("__block done")
    return "\n".join(out) + "\n"


def expect_prints(line):
    """`cmd  # prints: TEXT` in the docs: run cmd and check its output has TEXT."""
    m = PRINTS.fullmatch(line)
    if not m:
        return line
    cmd, text = m.group(1).rstrip(), m.group(2).strip()
    return f"__out=$({cmd} 2>&1); printf '%s\\n' \"$__out\"; __expect \"$__out\" {sh_quote(text)}"


def run_session(blocks, cwd, env, logfile):
    """Run a file's script in its own process group; stop the group after."""
    with open(logfile, "w") as f:
        proc = subprocess.Popen(
            ["bash", "-c", session_script(blocks)], cwd=cwd, env=env,
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=FILE_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            stop_group(proc)
    return rc


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def run_file(path, tmp):
    blocks = parse(path)
    if not blocks:
        return [f"{path}: no ```sh block found"], [], 0
    work = tmp / re.sub(r"[^A-Za-z0-9]+", "-", path)
    (work / "cwd").mkdir(parents=True)
    (work / "auth.json").write_text("{}\n")  # podman refuses a missing REGISTRY_AUTH_FILE
    env = dict(os.environ)
    env.update({
        "PATH": f"{REPO}/target/release:{REPO}/.tools/bin:{env.get('PATH', '/usr/bin:/bin')}",
        "STRATA_RUNNER_ROOT": str(work / "runner-root"),
        "DOCKER_CONFIG": str(work / "docker-config"),
        "REGISTRY_AUTH_FILE": str(work / "auth.json"),
        "CARGO_TERM_COLOR": "never",
        "NO_COLOR": "1",
    })
    cwd = REPO if path == "README.md" else work / "cwd"
    for block in blocks:
        for name, value in PLACEHOLDERS.items():
            block.code = block.code.replace(name, value.format(work=work))
    skipped = [f"{b.where()}: {b.arg or 'no reason given'}" for b in blocks if b.mode == "skip"]
    logfile = work / "session.log"
    log(f"{path}: running {len(blocks) - len(skipped)} blocks (output: {logfile})")
    rc = run_session(blocks, cwd, env, logfile)
    output = logfile.read_text(errors="replace")
    reached = re.findall(r"^@@docs-test block (\S+)$", output, re.M)
    if rc == 0 and reached and reached[-1] == "done":
        return [], skipped, len(reached) - 1
    last = reached[-1] if reached else None
    block = blocks[int(last)] if last not in (None, "done") else None
    why = "timed out" if rc is None else f"exit status {rc}"
    where = block.where() if block else path
    tail = output[output.rfind(f"@@docs-test block {last}"):][-3000:] if last else output[-3000:]
    code = block.code if block else ""
    return [f"{where}: {why}\n--- block:\n{code}--- output (tail):\n{tail}"], skipped, len(reached) - 1


def main():
    # A kill of this script (a CI timeout) must still stop what it started.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    files = sys.argv[1:] or DEFAULT_FILES
    for tool in ["registry", "runner"]:
        if not (REPO / "target/release" / tool).exists():
            log(f"error: target/release/{tool} missing; run `cargo build --release --workspace` first")
            return 1
    readme_data = REPO / "data"
    if "README.md" in files and readme_data.exists():
        log(f"error: {readme_data} exists; the README's first command keeps its data there. Move it away and rerun")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="strata-docs-"))
    failures, skipped, ran = [], [], 0
    try:
        for path in files:
            f, s, r = run_file(path, tmp)
            failures += f
            skipped += s
            ran += r
    finally:
        shutil.rmtree(readme_data, ignore_errors=True)
        subprocess.run(["umount", "-R", "-l", str(tmp)], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{ran} blocks run, {len(skipped)} not run here, {len(failures)} failed")
    for s in skipped:
        log(f"not run: {s}")
    for f in failures:
        log(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
