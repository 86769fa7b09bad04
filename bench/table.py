#!/usr/bin/env python3
"""Markdown tables from bench/results/*.jsonl (the README's tables are printed by this).

    python3 bench/table.py [RESULTS.jsonl ...]              # default: bench/results/*.jsonl
    python3 bench/table.py --commit e7ddf55 bench/results/quantize.jsonl
    python3 bench/table.py --diff A B [RESULTS ...]          # every number at commit A vs commit B
    python3 bench/table.py --long bench/results/llm.jsonl    # one row per (model, metric)

One table per benchmark and CPU int8 arithmetic; one row per model (and variant, e.g. a mode or a
backend); one column per metric with the tools side by side (`ovpot / nncf`), and the ratio
ovpot / NNCF for times and peak RSS. By default each (tool, model, variant, metric) shows its
latest line (the last appended); --commit C keeps the lines of commits starting with C.
Needs only the standard library.
"""
import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RATIO_METRICS = ("time_s", "wall_s", "rss_mib", "latency_ms")
FORMATS = {"dB": "{:.2f}", "s": "{:.2f}", "ms": "{:.3f}", "MiB": "{:.0f}"}
# Columns in this order where present, then the others as first seen.
METRIC_ORDER = ["time_s", "wall_s", "io_s", "rss_mib", "accuracy", "agreement", "sqnr_db", "int8_layers", "heavy_layers",
                "fake_quantize", "latency_ms", "bin_bytes"]
TOOL_ORDER = ["ovpot", "ovpot-builtin", "ovpot-openvino", "ovpot-python", "nncf", "nncf-overflow-enable", "fp32",
              "openvino"]


def read(paths):
    recs = []
    for p in paths:
        for n, line in enumerate(Path(p).read_text().splitlines(), 1):
            line = line.strip()
            if line:
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    print(f"{p}:{n}: {e}", file=sys.stderr)
    return recs


def variant(r):
    return str((r.get("options") or {}).get("variant", ""))


def key(r):
    return (r["bench"], r.get("int8_arith", ""), r["model"], variant(r), r["tool"], r["metric"])


def latest(recs):
    """The last line per (bench, int8 arith, model, variant, tool, metric), in first-seen order."""
    out = {}
    for r in recs:
        out[key(r)] = r  # an existing key keeps its place
    return list(out.values())


def fmt(v, unit=None, metric=""):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if unit in FORMATS:
            return FORMATS[unit].format(v)
        if metric in ("accuracy", "agreement") or abs(v) < 10:
            return f"{v:.4f}"
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def tool_rank(t):
    return (TOOL_ORDER.index(t) if t in TOOL_ORDER else len(TOOL_ORDER), t)


def wide(recs, only_metrics=None):
    """[(title, head, rows)]: per (bench, int8 arith), one row per (model, variant)."""
    groups = {}
    for r in recs:
        groups.setdefault((r["bench"], r.get("int8_arith", "")), []).append(r)
    tables = []
    for (bench, arith), rs in groups.items():
        metrics, tools_of, units, cells, rowkeys = [], {}, {}, {}, []
        for r in rs:
            m = r["metric"]
            if m not in metrics:
                metrics.append(m)
            tools_of.setdefault(m, [])
            if r["tool"] not in tools_of[m]:
                tools_of[m].append(r["tool"])
            units.setdefault(m, r.get("unit"))
            rk = (r["model"], variant(r))
            if rk not in rowkeys:
                rowkeys.append(rk)
            cells[(rk, r["tool"], m)] = r["value"]
        seen = list(metrics)
        metrics.sort(key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), seen.index(m)))
        if only_metrics:
            metrics = [m for m in only_metrics if m in metrics]
        for m in metrics:
            tools_of[m].sort(key=tool_rank)
        with_variant = any(v for _, v in rowkeys)
        head = ["model"] + (["variant"] if with_variant else [])
        cols = []
        for m in metrics:
            unit = f" ({units[m]})" if units[m] else ""
            head.append(f"{m}{unit} {' / '.join(tools_of[m])}")
            cols.append(("values", m))
            base = next((b for b in ("nncf", "openvino") if b in tools_of[m]), None)
            if m in RATIO_METRICS and base:
                for t in tools_of[m]:
                    if t.startswith("ovpot"):
                        head.append(f"{m} {t}/{base}")
                        cols.append(("ratio", m, t, base))
        rows = []
        for rk in rowkeys:
            row = [rk[0]] + ([rk[1]] if with_variant else [])
            for c in cols:
                m = c[1]
                if c[0] == "values":
                    row.append(" / ".join(fmt(cells.get((rk, t, m)), units[m], m) for t in tools_of[m]))
                else:
                    a, b = cells.get((rk, c[2], m)), cells.get((rk, c[3], m))
                    row.append(f"{a / b:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                               else "-")
            rows.append(row)
        commits = sorted({r["commit"] for r in rs})
        dates = sorted({r["date"][:10] for r in rs})
        cpus = sorted({r.get("cpu", "") for r in rs})
        title = (f"{bench}: commit {', '.join(commits)}; {', '.join(dates)}; int8 arithmetic {arith}; "
                 f"{'; '.join(cpus)}")
        tables.append((title, head, rows))
    return tables


def long(recs):
    tables = []
    groups = {}
    for r in recs:
        groups.setdefault((r["bench"], r.get("int8_arith", "")), []).append(r)
    for (bench, arith), rs in groups.items():
        tools = sorted({r["tool"] for r in rs}, key=tool_rank)
        cells, rowkeys, units = {}, [], {}
        for r in rs:
            rk = (r["model"], variant(r), r["metric"])
            if rk not in rowkeys:
                rowkeys.append(rk)
            cells[(rk, r["tool"])] = r["value"]
            units[r["metric"]] = r.get("unit")
        head = ["model", "variant", "metric"] + tools + (["ovpot/nncf"] if "nncf" in tools and "ovpot" in tools else [])
        rows = []
        for rk in rowkeys:
            row = list(rk) + [fmt(cells.get((rk, t)), units[rk[2]], rk[2]) for t in tools]
            if head[-1] == "ovpot/nncf":
                a, b = cells.get((rk, "ovpot")), cells.get((rk, "nncf"))
                ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and b
                row.append(f"{a / b:.2f}x" if ok and rk[2] in RATIO_METRICS else "")
            rows.append(row)
        tables.append((f"{bench} (int8 arithmetic {arith}; commit {', '.join(sorted({r['commit'] for r in rs}))})",
                       head, rows))
    return tables


def print_tables(tables):
    for title, head, rows in tables:
        print(f"\n{title}\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")


def print_records(recs, long_form=False, metrics=None):
    """What each benchmark prints at the end: its own lines as tables."""
    print_tables(long(recs) if long_form else wide(latest(recs), metrics))


def diff(recs, a, b, threshold):
    at = {k: r for k, r in ((key(r), r) for r in recs if r["commit"].startswith(a))}
    bt = {k: r for k, r in ((key(r), r) for r in recs if r["commit"].startswith(b))}
    if not at or not bt:
        raise SystemExit(f"no lines for commit {a if not at else b}")
    head = ["bench", "int8", "model", "variant", "tool", "metric", a, b, "change"]
    rows, same = [], 0
    only_a, only_b = len(set(at) - set(bt)), len(set(bt) - set(at))
    for k in [k for k in at if k in bt]:
        ra, rb = at[k], bt[k]
        va, vb = ra["value"], rb["value"]
        unit = ra.get("unit")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb)):
            change = vb - va
            rel = change / abs(va) if va else (0.0 if not change else float("inf"))
            if abs(rel) <= threshold:
                same += 1
                continue
            ch = f"{change:+.4g} ({100 * rel:+.1f}%)" if va else f"{change:+.4g}"
        elif va == vb:
            same += 1
            continue
        else:
            ch = "changed"
        rows.append(list(k[:6]) + [fmt(va, unit, k[5]), fmt(vb, unit, k[5]), ch])
    print_tables([(f"{a} -> {b}: {len(rows)} numbers changed by more than {100 * threshold:g}%, {same} within; "
                   f"{only_a} only at {a}, {only_b} only at {b}", head, rows)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", help="results files (default: bench/results/*.jsonl)")
    ap.add_argument("--commit", help="only lines of commits starting with this")
    ap.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two commits, number by number")
    ap.add_argument("--threshold", type=float, default=0.0,
                    help="--diff: hide relative changes up to this fraction (e.g. 0.05)")
    ap.add_argument("--bench", help="only this benchmark")
    ap.add_argument("--long", action="store_true", help="one row per (model, metric), tools as columns")
    ap.add_argument("--metrics", help="comma-separated metrics, in this order (default: all)")
    ap.add_argument("--tools", help="comma-separated tools (default: all)")
    args = ap.parse_args()
    paths = args.results or sorted(RESULTS.glob("*.jsonl"))
    recs = read(paths)
    if args.bench:
        recs = [r for r in recs if r["bench"] == args.bench]
    if args.tools:
        recs = [r for r in recs if r["tool"] in args.tools.split(",")]
    if args.diff:
        return diff(recs, args.diff[0], args.diff[1], args.threshold)
    if args.commit:
        recs = [r for r in recs if r["commit"].startswith(args.commit)]
    if not recs:
        raise SystemExit("no results")
    recs = latest(recs)
    metrics = args.metrics.split(",") if args.metrics else None
    if metrics and args.long:
        recs = [r for r in recs if r["metric"] in metrics]
    print_tables(long(recs) if args.long else wide(recs, metrics))


if __name__ == "__main__":
    main()
