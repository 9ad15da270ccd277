"""Markdown tables from the JSON the scale and peer benchmarks write (for BENCHMARKS.md).

    .venv/bin/python -m bench.scale_report bench/results/scale_100k.json bench/results/scale_1m.json \
        bench/results/peers.json bench/results/lexical_budget.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def scale(report: dict) -> list[str]:
    out = [f"**{report['chunks']:,} chunks** ({report['real_chunks']:,} real, the rest synthetic), "
           f"load through IndexStore: {report['load']['rows_per_s']:,} rows/s "
           f"({report['load']['seconds']} s), tables {report['table_mb']:,.0f} MB, exact search in PostgreSQL "
           f"p50 {report['exact_in_postgres_ms']['p50']} ms.", ""]
    out += ["| storage | build | index | ef_search | p50 ms | p95 ms | Recall@10 |", "|---|---|---|---|---|---|---|"]
    for storage, s in report["storages"].items():
        for i, (ef, d) in enumerate(s["dense"].items()):
            head = [storage, f"{s['build_s']} s", f"{s['index_mb']:,.0f} MB"] if i == 0 else ["", "", ""]
            cells = [*head, str(ef), str(d["p50"]), str(d["p95"]), f"{d['recall@10']:.3f}"]
            out.append("| " + " | ".join(cells) + " |")
    out += ["", "| storage | hybrid p50 ms | hybrid p95 ms |", "|---|---|---|"]
    for storage, s in report["storages"].items():
        out.append(f"| {storage} | {s['hybrid_ef100']['p50']} | {s['hybrid_ef100']['p95']} |")
    out += ["", "| storage, variant | source (share) | plan | p50 ms | p95 ms | full results | Recall@10 "
            "| rows w/o iterative scan |", "|---|---|---|---|---|---|---|---|"]
    for storage, s in report["storages"].items():
        for key in ("filtered_ef100", "filtered_ef100_without_source_btree", "filtered_ef100_with_source_btree"):
            for name, f in s.get(key, {}).items():
                variant = storage + {"filtered_ef100": "", "filtered_ef100_without_source_btree": ", no B-tree",
                                     "filtered_ef100_with_source_btree": ", + B-tree on source"}[key]
                out.append(f"| {variant} | {name} ({f['share']:.2%}) | {f['plan']} | {f['p50']} | {f['p95']} | "
                           f"{f['full_results']:.0%} | {f['recall@10']:.3f} | "
                           f"{f.get('rows_without_iterative_scan', '')} |")
    return out


def peers(report: dict) -> list[str]:
    systems = report["systems"]
    out = [f"{report['chunks']:,} chunks, {report['queries']} questions; {report['machine']}.", "",
           "| system | ingest rows/s | dense p50 / p95 ms | hybrid p50 / p95 ms | dense R@10 / nDCG@10 "
           "| hybrid R@10 / nDCG@10 |", "|---|---|---|---|---|---|"]
    for name, s in systems.items():
        out.append(f"| {name} | {s['ingest_rows_per_s']:,} ({s['ingest_s']} s) | "
                   f"{s['dense']['p50']} / {s['dense']['p95']} | {s['hybrid']['p50']} / {s['hybrid']['p95']} | "
                   f"{s['dense']['recall@10']:.3f} / "
                   f"{s['dense']['ndcg@10']:.3f} | {s['hybrid']['recall@10']:.3f} / {s['hybrid']['ndcg@10']:.3f} |")
    if "ratios" in report:
        out += ["", "Ratios (kbbot vs the faster peer on each measure): " + ", ".join(
            f"{k.replace('_vs_faster_peer', '')} {v}x" for k, v in report["ratios"].items())]
    return out


def budget(report: dict) -> list[str]:
    out = [f"{report['chunks']:,} real chunks, {report['queries']} questions.", "",
           "| budget (postings) | lexical R@10 / nDCG@10 | lexical p50 / p95 ms | hybrid R@10 / nDCG@10 "
           "| hybrid p50 / p95 ms |", "|---|---|---|---|---|"]
    for b, r in report["budgets"].items():
        lx, hy = r["lexical"], r["hybrid"]
        out.append(f"| {b} | {lx['recall@10']:.3f} / {lx['ndcg@10']:.3f} | {lx['p50']} / {lx['p95']} | "
                   f"{hy['recall@10']:.3f} / {hy['ndcg@10']:.3f} | {hy['p50']} / {hy['p95']} |")
    return out


def main() -> None:
    for path in sys.argv[1:]:
        report = json.loads(Path(path).read_text())
        print(f"\n<!-- {path} -->")
        if "storages" in report:
            lines = scale(report)
        elif "systems" in report:
            lines = peers(report)
        else:
            lines = budget(report)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
