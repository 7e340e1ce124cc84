"""report.html: one self-contained page (inline CSS, plots and overlays as data URIs).

Every value shown comes from the summary dict that also goes to summary.json, so the page
and the JSON never disagree. All text from the data is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from labeling.report import plots
from labeling.report.overlay import Overlay, hex_colour
from labeling.report.page_style import CSS


class Raw(str):
    """Markup that is already HTML (not escaped again)."""


def esc(value: Any) -> str:
    return value if isinstance(value, Raw) else html.escape(str(value))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.{digits}g}"
    return str(value)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def swatch(category_id: int, text: str, name: str | None = None) -> Raw:
    colour = hex_colour(category_id, name)
    return Raw(f'<span class="sw" style="background:{colour}"></span>{esc(text)}')


def img(uri: str, alt: str, width: int | None = None, height: int | None = None) -> str:
    size = f' width="{width}" height="{height}"' if width and height else ""
    return f'<img src="{uri}" alt="{esc(alt)}"{size}>'


# ---------------------------------------------------------------------------- sections
def header(summary: dict[str, Any]) -> str:
    items = []
    for name, s in summary["sets"].items():
        producers = ", ".join(p.get("backend", "?") for p in s["producers"]) or "unknown"
        sampled = (f" — <b>sample of {s['rows_read']:,} of {s['rows_in_directory']:,} rows</b>"
                   if s["sampled"] else "")
        items.append(f"<li><b>{esc(name)}</b>: <code>{esc(s['path'])}</code> — backends "
                     f"{esc(producers)}, schema {esc(s['schema_version'])}, code "
                     f"{esc(s['code_version'])}{sampled}</li>")
    return (f"<h1>Label quality report</h1><p class='muted'>generated {esc(summary['generated'])}"
            f"</p><ul>{''.join(items)}</ul>")


def totals(summary: dict[str, Any]) -> str:
    sets = summary["sets"]
    names = list(sets)

    def row(label: str, get) -> list[Any]:
        return [label] + [get(sets[n]) for n in names]

    rows = [
        row("images (rows read)", lambda s: fmt(s["totals"]["rows"])),
        row("ok", lambda s: fmt(s["totals"]["ok"])),
        row("failed", lambda s: fmt(s["totals"]["error"])),
        row("semantic masks", lambda s: fmt(s["totals"]["semantic_masks"])),
        row("instance masks", lambda s: fmt(s["totals"]["instance_masks"])),
        row("instances per ok image", lambda s: fmt(s["distributions"]["instances_per_image"]["mean"])),
        row("instances small / medium / large", lambda s: " / ".join(
            fmt(s["instance_sizes"][k]) for k in ("small", "medium", "large"))),
        row("rows in directory", lambda s: fmt(s["rows_in_directory"])),
        row("bytes on disk (shards)", lambda s: human_bytes(s["disk"]["shard_bytes"])),
        row("bytes per image", lambda s: human_bytes(s["disk"]["bytes_per_row"])),
        row("shards", lambda s: fmt(s["disk"]["shards"])),
    ]
    columns = sorted({c for s in sets.values() for c in s["disk"]["columns"]},
                     key=lambda c: -max(s["disk"]["columns"].get(c, 0) for s in sets.values()))
    per_column = [row(c, lambda s, c=c: human_bytes(s["disk"]["columns"].get(c, 0))) for c in columns]
    per_column.append(row("footers and metadata", lambda s: human_bytes(s["disk"]["footer_bytes"])))
    out = ("<h2 id='totals'>Totals</h2>" + table(["", *names], rows, "num")
           + "<details><summary>bytes on disk per column (compressed)</summary>"
           + table(["column", *names], per_column, "num") + "</details>")
    fails = []
    for n in names:
        reasons = sets[n]["totals"]["failure_reasons"]
        if reasons:
            fails.append(f"<h3>Failures in {esc(n)}</h3>" + table(
                ["reason (paths and numbers blanked)", "rows"],
                [[r, fmt(c)] for r, c in reasons.items()], "num"))
            examples = sets[n]["totals"]["failed_examples"]
            fails.append("<details><summary>examples</summary>" + table(
                ["image_id", "error"], [[e["image_id"], e["error"]] for e in examples]) + "</details>")
    return out + "".join(fails)


DISTRIBUTIONS = [  # key, title, x label, integer bins, log x
    ("instances_per_image", "instance masks per image", "masks", True, False),
    ("semantic_per_image", "semantic categories per image", "categories", True, False),
    ("instance_relative_area", "instance area", "share of the image", False, True),
    ("labeled_fraction", "semantic coverage", "labeled share of the image", False, False),
    ("instance_score", "instance scores", "predicted IoU / score", False, False),
    ("instance_stability", "instance stability", "stability score", False, False),
    ("semantic_score", "semantic category scores", "mean confidence", False, False),
]


def distributions(summary: dict[str, Any]) -> str:
    sets = summary["sets"]
    figs = []
    for key, title, xlabel, integer, log_x in DISTRIBUTIONS:
        series = [(n, s["distributions"][key]) for n, s in sets.items()]
        if all(h["count"] == 0 and h["missing"] == 0 for _, h in series):
            continue
        figs.append(_figure(plots.histogram(series, title, xlabel, integer, log_x), title, series))
    quality = []
    first = next(iter(sets.values()))
    for key in first["quality"]:
        series = [(n, s["quality"][key]) for n, s in sets.items() if key in s["quality"]]
        if all(h["count"] == 0 for _, h in series):
            continue
        integer = key.startswith("num_")
        quality.append(_figure(plots.histogram(series, key, key, integer, key == "seconds"),
                               key, series))
    return ("<h2 id='distributions'>Distributions</h2><div class='grid'>" + "".join(figs)
            + "</div><h3>Quality metrics (per image, from the labeling job)</h3><div class='grid'>"
            + ("".join(quality) or "<p>No quality metrics were recorded.</p>") + "</div>")


def _figure(uri: str, title: str, series) -> str:
    stats = "; ".join(f"{esc(n)}: mean {fmt(h['mean'])}, n={fmt(h['count'])}" for n, h in series)
    return f"<figure class='plot'>{img(uri, title)}<figcaption>{stats}</figcaption></figure>"


def categories(summary: dict[str, Any], top: int) -> str:
    sets = summary["sets"]
    series = [(n, s["semantic_categories"]) for n, s in sets.items()]
    if not any(rows for _, rows in series):
        return "<h2 id='categories'>Semantic categories</h2><p>No semantic masks.</p>"
    out = ["<h2 id='categories'>Semantic categories</h2>",
           img(plots.top_categories(series, top), "top semantic categories")]
    for name, rows in series:
        out.append(f"<details><summary>{esc(name)}: all {len(rows)} categories</summary>" + table(
            ["category", "pixel share", "images", "instances", "mean score"],
            [[swatch(r["category_id"], r["name"], r["name"]), pct(r["pixel_share"]), fmt(r["images"]),
              fmt(r["instances"]), fmt(r["mean_score"])] for r in rows], "num") + "</details>")
    return "".join(out)


def classes(summary: dict[str, Any], limit: int = 1000) -> str:
    sets = summary["sets"]
    names = list(sets)
    by_class: dict[int, dict[str, dict]] = {}
    for n in names:
        for r in sets[n]["classes"]:
            by_class.setdefault(r["class_index"], {})[n] = r
    rows = []
    for c in sorted(by_class)[:limit]:
        entry = by_class[c]
        first = next(iter(entry.values()))
        label = f"{c}: {first['name']}" if c >= 0 else "(no class)"
        cells: list[Any] = [label]
        for n in names:
            r = entry.get(n)
            if r is None:
                cells += ["–", "–", "–"]
                continue
            cats = Raw("<br>".join(swatch(k["category_id"], f"{k['name']} {pct(k['pixel_share'])}", k["name"])
                                   for k in r["categories"][:3]))
            cells += [fmt(r["images"]), cats, pct(r["unlabeled_share"])]
        rows.append(cells)
    headers = ["ImageNet class"]
    for n in names:
        headers += [f"{n} images", f"{n} top categories (pixel share)", f"{n} unlabeled"]
    more = f"<p class='muted'>first {limit} of {len(by_class)} classes</p>" if len(by_class) > limit else ""
    return ("<h2 id='classes'>Per ImageNet class</h2><p class='muted'>Which semantic categories"
            " the images of each class get, by share of their pixels.</p>"
            + table(headers, rows, "classes") + more)


def card(ov: Overlay, lines: Sequence[str]) -> str:
    legend = "".join(f"<li>{swatch(e['category_id'], e['name'] + ' ' + pct(e['share']), e['name'])}</li>"
                     for e in ov.legend[:8])
    note = f"<div class='note'>{esc(ov.note)}</div>" if ov.note else ""
    text = "".join(f"<div>{esc(t)}</div>" for t in lines)
    return (f"<figure class='card' style='width:{max(ov.width, 200) + 12}px'>"
            f"{img(ov.data_uri, ov.image_id, ov.width, ov.height)}"
            f"<figcaption><code>{esc(ov.image_id)}</code>{text}<div>{ov.instances} instances</div>"
            f"{note}<ul class='legend'>{legend}</ul></figcaption></figure>")


def galleries(summary: dict[str, Any], items: dict[str, dict[str, list]]) -> str:
    out = ["<h2 id='galleries'>Galleries</h2><p class='muted'>Semantic categories in colour,"
           " instance outlines in white. The random sample is chosen by a hash of the image id,"
           " so the same images are picked in every label set.</p>"]
    missing = summary["missing_images"]
    if missing["count"]:
        out.append(f"<p class='warn'>{missing['count']} image file(s) could not be loaded; their "
                   "labels are drawn on grey. " + esc("; ".join(
                       f"{k}: {v}" for k, v in list(missing["images"].items())[:5])) + "</p>")
    for name, per in items.items():
        metric = summary["sets"][name]["worst_metric"]
        out.append(f"<h3>{esc(name)}: random sample</h3><div class='gallery'>"
                   + "".join(card(i["overlay"], [_class_line(i)])
                             for i in per["sample"]) + "</div>")
        out.append(f"<h3>{esc(name)}: worst by {esc(metric)}</h3><div class='gallery'>"
                   + ("".join(card(i["overlay"], [f"{metric.split()[0]} = {fmt(i['value'])}"])
                              for i in per["worst"]) or "<p>No image has this metric.</p>")
                   + "</div>")
    return "".join(out)


def _class_line(item: dict[str, Any]) -> str:
    if item["class_index"] < 0:
        return "no ImageNet class"
    return f"class {item['class_index']}: {item['class_name']}"


def comparison(summary: dict[str, Any], comp: dict[str, Any]) -> str:
    c = summary["compare"]
    j = c["join"]
    rows = [
        ["join method", j["method"]], ["images in both", fmt(j["joined"])],
        ["only in A", fmt(j["only_a"])], ["only in B", fmt(j["only_b"])],
        ["ok in both", fmt(c["both_ok"])], ["ok only in A", fmt(c["ok_only_a"])],
        ["ok only in B", fmt(c["ok_only_b"])], ["failed in both", fmt(c["both_error"])],
        ["semantic pixel agreement (all pixels)", pct(c["pixel_agreement"])],
        ["mean per-image semantic agreement", pct(c["semantic_agreement"]["mean"])],
        ["mean per-image instance agreement (matched mask IoU)", fmt(c["instance_agreement"]["mean"])],
        ["instances A / B", f"{fmt(c['instances_a'])} / {fmt(c['instances_b'])}"],
        ["matched at IoU ≥ 0.5 (share of A / of B)",
         f"{fmt(c['matched_iou50'])} ({pct(c['matched_share_a'])} / {pct(c['matched_share_b'])})"],
    ]
    figs = [
        _figure(plots.histogram([("A vs B", c["semantic_agreement"])], "semantic pixel agreement",
                                "share of pixels with the same category"), "semantic agreement",
                [("A vs B", c["semantic_agreement"])]),
        _figure(plots.histogram([("A vs B", c["instance_agreement"])], "instance agreement",
                                "matched IoU sum / max(#A, #B)"), "instance agreement",
                [("A vs B", c["instance_agreement"])]),
    ]
    pairs = table(["A category", "B category", "pixels", "share"],
                  [[p["a"], p["b"], fmt(p["pixels"]), pct(p["share"])] for p in c["category_pairs"]],
                  "num")
    cards = "".join(
        "<div class='pair'>" + card(g["a"], ["A", f"semantic agreement {pct(g['semantic_agreement'])}",
                                             f"instance agreement {fmt(g['instance_agreement'])}"])
        + card(g["b"], ["B"]) + "</div>" for g in comp["gallery"])
    return ("<h2 id='compare'>A vs B: per-image agreement</h2>" + table(["", "value"], rows, "num")
            + "<div class='grid'>" + "".join(figs) + "</div><h3>What A calls what B calls"
            " (pixels, top pairs)</h3>" + pairs + "<h3>Least agreeing images</h3>"
            + (cards or "<p>No image is ok in both sets.</p>"))


def ground_truth(summary: dict[str, Any]) -> str:
    g = summary["ground_truth"]
    rows = [["images scored", fmt(g["images"])], ["rows without a GT file", fmt(g["rows_without_gt"])],
            ["failed rows that have GT", fmt(g["failed_rows_with_gt"])],
            ["pseudo-labels resized to the GT size", fmt(g["resized_to_gt"])],
            ["mIoU", fmt(g["miou"])], ["pixel accuracy", pct(g["pixel_accuracy"])],
            ["category mapping", g["mapping"]["source"]]]
    per = sorted(g["per_class"], key=lambda r: (r["iou"] is None, r["iou"] or 0.0))
    plot = ""
    scored = [r for r in per if r["iou"] is not None][:30]
    if scored:
        plot = img(plots.bars([f"{r['gt_id']}: {r['name']}" for r in scored],
                              [r["iou"] for r in scored], "per-class IoU (lowest first)", "IoU"),
                   "per-class IoU")
    unreadable = ("<p class='warn'>" + esc("; ".join(g["unreadable"])) + "</p>") if g["unreadable"] else ""
    return ("<h2 id='ground-truth'>Against ground truth</h2>" + table(["", "value"], rows, "num")
            + unreadable + plot + table(["GT id", "name", "IoU", "GT pixels", "TP", "FP", "FN"],
                                        [[r["gt_id"], r["name"], fmt(r["iou"]), fmt(r["gt_pixels"]),
                                          fmt(r["tp"]), fmt(r["fp"]), fmt(r["fn"])] for r in per[:200]],
                                        "num"))


def render_page(summary: dict[str, Any], gallery_items: dict, comp: dict | None, cfg) -> str:
    parts = [header(summary), totals(summary), distributions(summary),
             categories(summary, cfg.top_categories), classes(summary),
             galleries(summary, gallery_items)]
    nav = ["totals", "distributions", "categories", "classes", "galleries"]
    if comp is not None:
        parts.append(comparison(summary, comp))
        nav.append("compare")
    if "ground_truth" in summary:
        parts.append(ground_truth(summary))
        nav.append("ground-truth")
    links = " · ".join(f"<a href='#{n}'>{n.replace('-', ' ')}</a>" for n in nav)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Label quality report</title><style>{CSS}</style></head><body>"
            f"<nav>{links}</nav><main>{''.join(parts)}</main></body></html>")
