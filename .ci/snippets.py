#!/usr/bin/env python3
"""Runs every fenced code block of README.md and docs/*.md, so the documentation cannot rot.

Each document gets a scratch checkout of its own (a temp dir with `tests/`, `include/`,
`python/`, `Cargo.toml`, `ovpot*.pc.in` linked from the repo, `examples_c/` copied, and
`target/release/` holding the already built `ovpot`, `libovpot.so` and `libovpot.a`); its blocks
run there in document order, so a file one block writes is there for the next. By info string:

  sh, bash   run by bash (-e -o pipefail) with target/release on PATH; HOME is the scratch dir's
             home/ (so `make install PREFIX=$HOME/.local` stays inside). `cargo` is a shim:
             `cargo build --release ...` is a no-op (target/release is already built) and
             `cargo run --release -- ARGS` runs target/release/ovpot ARGS; any other cargo
             command fails (mark such a block no-run).
  c, cpp     compiled against include/ and target/release/libovpot (rpath set) and run
  python     run with a Python that has openvino and numpy (--python, $OVPOT_SNIPPET_PYTHON,
             $OVPOT_PEERS/venv/bin/python, else python3), the ovpot package from python/ and
             OVPOT_LIBRARY=target/release/libovpot.so; skipped with a note when there is none
  json       parsed (strict JSON)
  text       not run (output, usage synopses, trees)

Info-string words after the language: `no-run` (shown, never run: say why in the text near it),
`file=NAME` (the block is also written to NAME in the scratch dir before it runs, for later
blocks). A fence without a language, or with one not listed, is an error: every block says what
it is. Relative links ([text](file.md#heading)) must lead to a file and heading that exist.

    .ci/snippets.py --bin-dir target/debug --lib-dir target/debug/deps [--only docs/c-api.md] [-v]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGS = {"sh", "bash", "c", "cpp", "python", "json"}
TEXT_LANGS = {"text"}
LINKED = ["tests", "include", "python", "Cargo.toml", "ovpot.pc.in", "ovpot-static.pc.in"]
COPIED = ["examples_c"]  # a copy: its Makefile finds the checkout (and target/) from its own path
TIMEOUT = 180

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")

CARGO_SHIM = r"""#!/usr/bin/env bash
# snippets.py's cargo: target/release already holds the build the docs' commands would make.
here="$(cd "$(dirname "$0")/.." && pwd)"
case "$1" in
  build)
    echo "(snippets: cargo $* skipped: target/release holds the built ovpot and libovpot)" >&2
    exit 0 ;;
  run)
    shift
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
    [ "$#" -gt 0 ] && shift
    exec "$here/target/release/ovpot" "$@" ;;
esac
echo "snippets: 'cargo $*' is not emulated; mark the block no-run" >&2
exit 1
"""


class Block:
    def __init__(self, doc, line, lang, words, text):
        self.doc, self.line, self.lang, self.text = doc, line, lang, text
        self.no_run = "no-run" in words
        self.file = next((w[5:] for w in words if w.startswith("file=")), None)

    def where(self):
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks_of(doc):
    """The fenced blocks of a markdown file, content dedented by the fence's indentation."""
    out, lines, i = [], doc.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            c = FENCE.match(lines[i])
            if c and c.group(2).startswith(fence[0]) and len(c.group(2)) >= len(fence) and not c.group(3).strip():
                break
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        if i >= len(lines):
            raise SystemExit(f"{doc.relative_to(ROOT)}:{start}: unclosed code fence")
        words = info.split()
        out.append(Block(doc, start, words[0] if words else "", words[1:], "\n".join(body) + "\n"))
        i += 1
    return out


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor of a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors_of(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def broken_links(doc):
    """Relative links (files, #anchors) of a document that lead nowhere."""
    out = []
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            out.append(f"{doc.relative_to(ROOT)}: link to {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
            out.append(f"{doc.relative_to(ROOT)}: link to {target}: no such heading")
    return out


def find_python(explicit):
    cands = [explicit, os.environ.get("OVPOT_SNIPPET_PYTHON")]
    if os.environ.get("OVPOT_PEERS"):
        cands.append(str(Path(os.environ["OVPOT_PEERS"]) / "venv/bin/python"))
    cands += [str(ROOT / ".peers/venv/bin/python"), shutil.which("python3")]
    for c in filter(None, cands):
        if not Path(c).exists() and not shutil.which(c):
            continue
        r = subprocess.run([c, "-c", "import openvino, numpy"], capture_output=True)
        if r.returncode == 0:
            return c
    return None


def scratch(tmp, bin_dir, lib_dir):
    """A checkout-like folder: the repo's inputs linked, target/release holding the build."""
    for name in LINKED:
        os.symlink(ROOT / name, tmp / name)
    for name in COPIED:
        shutil.copytree(ROOT / name, tmp / name)
    rel = tmp / "target/release"
    rel.mkdir(parents=True)
    os.symlink(bin_dir / "ovpot", rel / "ovpot")
    for lib in ("libovpot.so", "libovpot.a"):
        if (lib_dir / lib).exists():
            os.symlink(lib_dir / lib, rel / lib)
    shim = tmp / ".shim"
    shim.mkdir()
    (shim / "cargo").write_text(CARGO_SHIM)
    (shim / "cargo").chmod(0o755)
    (tmp / "home").mkdir()


def env_for(tmp, python_ok):
    env = dict(os.environ)
    env["PATH"] = f"{tmp / '.shim'}:{tmp / 'target/release'}:{env.get('PATH', '')}"
    env["HOME"] = str(tmp / "home")
    env["OVPOT_LIBRARY"] = str(tmp / "target/release/libovpot.so")
    env["PYTHONPATH"] = str(tmp / "python")
    env.pop("CARGO_TARGET_DIR", None)  # the Makefile's target is the scratch dir's
    env.pop("PKG_CONFIG_PATH", None)
    return env


def run_block(b, tmp, env, python, verbose):
    """Runs one block; returns (status, detail): status in ok, skip, fail."""
    name = b.file or f"snippet_{b.line}"
    if b.file:
        (tmp / b.file).write_text(b.text)
    if b.lang == "json":
        try:
            json.loads(b.text)
        except ValueError as e:
            return "fail", f"invalid JSON: {e}"
        return "ok", ""
    if b.lang in ("sh", "bash"):
        script = tmp / f".{name}.sh"
        script.write_text(b.text)
        cmd = ["bash", "-e", "-o", "pipefail", str(script)]
    elif b.lang in ("c", "cpp"):
        src = tmp / (b.file or f"{name}.{b.lang}")
        src.write_text(b.text)
        exe = tmp / f".{name}.exe"
        rel = tmp / "target/release"
        compiler = ["cc", "-std=c11"] if b.lang == "c" else ["c++", "-std=c++17"]
        build = compiler + ["-Wall", "-Werror", f"-I{tmp / 'include'}", str(src), f"-L{rel}", "-lovpot",
                            f"-Wl,-rpath,{rel}", "-o", str(exe)]
        r = subprocess.run(build, cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        if r.returncode != 0:
            return "fail", f"compile: {' '.join(build)}\n{r.stdout}{r.stderr}"
        cmd = [str(exe)]
    elif b.lang == "python":
        if python is None:
            return "skip", "no Python with openvino and numpy (set OVPOT_SNIPPET_PYTHON)"
        src = tmp / (b.file or f"{name}.py")
        src.write_text(b.text)
        cmd = [python, str(src)]
    else:
        return "fail", f"language {b.lang!r} cannot run"
    r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if verbose:
        sys.stdout.write(r.stdout + r.stderr)
    if r.returncode != 0:
        return "fail", f"exit {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    return "ok", ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target/debug", help="holds the ovpot binary")
    ap.add_argument("--lib-dir", type=Path, default=None, help="holds libovpot.so/.a (default: BIN_DIR/deps)")
    ap.add_argument("--python", help="a Python with openvino and numpy for the python blocks")
    ap.add_argument("--only", action="append", help="a document (path from the repo root); repeatable")
    ap.add_argument("--list", action="store_true", help="list the blocks and what would be done")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dirs")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    bin_dir = a.bin_dir.resolve()
    lib_dir = (a.lib_dir or bin_dir / "deps").resolve()
    docs = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    if a.only:
        docs = [ROOT / p for p in a.only]
    problems = []
    all_blocks = []
    for d in docs:
        problems += broken_links(d)
        for b in blocks_of(d):
            if b.lang not in RUN_LANGS | TEXT_LANGS:
                problems.append(f"{b.where()}: fence with {'language ' + repr(b.lang) if b.lang else 'no language'};"
                                f" use one of {', '.join(sorted(RUN_LANGS | TEXT_LANGS))}")
            all_blocks.append(b)
    if problems:
        print("\n".join(problems))
        print(f"snippets: {len(problems)} problem(s) before anything ran")
        return 1
    if a.list:
        for b in all_blocks:
            what = "text" if b.lang in TEXT_LANGS else ("no-run" if b.no_run else "run")
            print(f"{b.where():<28} {b.lang:<7} {what}{' file=' + b.file if b.file else ''}")
        return 0
    if not (bin_dir / "ovpot").exists() or not (lib_dir / "libovpot.so").exists():
        print(f"snippets: needs {bin_dir}/ovpot and {lib_dir}/libovpot.so (cargo test --no-run builds both)")
        return 1
    python = find_python(a.python)
    if python is None:
        print("snippets: NOTE python blocks SKIPPED: no Python with openvino and numpy"
              " (set OVPOT_SNIPPET_PYTHON or --python)")
    counts = {"ok": 0, "skip": 0, "fail": 0, "no-run": 0, "text": 0}
    for d in docs:
        bs = [b for b in all_blocks if b.doc == d]
        if not bs:
            continue
        tmp = Path(tempfile.mkdtemp(prefix="ovpot-snippets-"))
        try:
            scratch(tmp, bin_dir, lib_dir)
            env = env_for(tmp, python is not None)
            for b in bs:
                if b.lang in TEXT_LANGS or b.no_run:
                    counts["text" if b.lang in TEXT_LANGS else "no-run"] += 1
                    if b.file:
                        (tmp / b.file).write_text(b.text)
                    continue
                t0 = time.time()
                try:
                    status, detail = run_block(b, tmp, env, python, a.verbose)
                except subprocess.TimeoutExpired:
                    status, detail = "fail", f"timed out after {TIMEOUT} s"
                counts[status] += 1
                mark = {"ok": "ok  ", "skip": "SKIP", "fail": "FAIL"}[status]
                print(f"{mark} {b.where():<28} {b.lang:<7} {time.time() - t0:6.1f} s"
                      f"{'  ' + detail.splitlines()[0] if status == 'skip' else ''}")
                if status == "fail":
                    print("     " + "\n     ".join(b.text.rstrip().splitlines()))
                    print("  -> " + "\n     ".join(detail.rstrip().splitlines()))
        finally:
            if a.keep:
                print(f"     scratch dir kept: {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    print(f"snippets: {counts['ok']} ran ok, {counts['fail']} failed, {counts['skip']} skipped (no Python),"
          f" {counts['no-run']} marked no-run, {counts['text']} text blocks")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
