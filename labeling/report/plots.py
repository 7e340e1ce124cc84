"""Plots of the report, drawn with matplotlib's Agg canvas and embedded as base64 PNG.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state), so the
report runs headless and leaves no figures open. Histograms take the dicts of
:meth:`labeling.report.stats.Histogram.to_dict`; with two series (``--compare``) bars are
shares of each set's total so sets of different sizes compare.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SERIES_COLOURS = ("#4c72b0", "#dd8452")
FIGSIZE = (4.0, 2.5)
DPI = 90


def to_data_uri(fig: Figure, tight: bool = False) -> str:
    """PNG data URI; `tight` fits the margins to the labels (one extra draw: slower)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    if not tight:
        fig.subplots_adjust(left=0.15, right=0.97, bottom=0.17, top=0.9)
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight else None)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _integer_bins(hist: dict[str, Any], last: int) -> tuple[list[str], np.ndarray]:
    counts = np.asarray(hist["counts"][: last + 1], dtype=float)
    labels = [str(int(e)) for e in hist["edges"][: last + 1]]
    if hist["overflow"]:
        counts = np.append(counts, hist["overflow"])
        labels.append(f">={int(hist['edges'][-1])}")
    return labels, counts


def _last_nonempty(hists: Sequence[dict[str, Any]]) -> int:
    last = 0
    for h in hists:
        nz = np.flatnonzero(h["counts"])
        if len(nz):
            last = max(last, int(nz[-1]))
    return last


def histogram(
    series: Sequence[tuple[str, dict[str, Any]]], title: str, xlabel: str,
    integer: bool = False, log_x: bool = False,
) -> str:
    """Bars of one or two fixed-bin histograms; returns a PNG data URI."""
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    share = len(series) > 1
    width = 0.8 / len(series)
    last = _last_nonempty([h for _, h in series])
    for k, (name, h) in enumerate(series):
        total = max(sum(h["counts"]) + h["overflow"] + h["underflow"], 1)
        if integer:
            labels, counts = _integer_bins(h, last)
            x = np.arange(len(counts)) + (k - (len(series) - 1) / 2) * width
            ax.bar(x, counts / total if share else counts, width=width,
                   color=SERIES_COLOURS[k], label=name)
            step = max(1, len(labels) // 12)
            ax.set_xticks(np.arange(len(labels))[::step], labels[::step])
        else:
            edges = np.asarray(h["edges"])
            counts = np.asarray(h["counts"], float)
            ax.stairs(counts / total if share else counts, edges, fill=not share,
                      color=SERIES_COLOURS[k], alpha=0.85 if not share else 1.0,
                      linewidth=1.6, label=name)
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("share" if share else "count", fontsize=9)
    ax.tick_params(labelsize=8)
    notes = _clipped_note(series)
    if notes:
        ax.text(0.99, 0.97, notes, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    if share:
        ax.legend(fontsize=8)
    return to_data_uri(fig)


def _clipped_note(series: Sequence[tuple[str, dict[str, Any]]]) -> str:
    parts = []
    for name, h in series:
        if h["underflow"] or h["missing"]:
            tag = f"{name}: " if len(series) > 1 else ""
            bits = []
            if h["underflow"]:
                bits.append(f"{h['underflow']} below range")
            if h["missing"]:
                bits.append(f"{h['missing']} missing")
            parts.append(tag + ", ".join(bits))
    return "\n".join(parts)


def top_categories(
    series: Sequence[tuple[str, list[dict[str, Any]]]], top: int = 20,
) -> str:
    """Horizontal bars: pixel share of the top-N semantic categories (by the first set)."""
    names = [r["name"] for r in series[0][1][:top]]
    fig = Figure(figsize=(FIGSIZE[0] + 1.2, 0.8 + 0.24 * max(len(names), 1)))
    ax = fig.add_subplot()
    height = 0.8 / len(series)
    y = np.arange(len(names))
    for k, (label, rows) in enumerate(series):
        share = {r["name"]: r["pixel_share"] for r in rows}
        values = [share.get(n, 0.0) for n in names]
        ax.barh(y + (k - (len(series) - 1) / 2) * height, values, height=height,
                color=SERIES_COLOURS[k], label=label)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of labeled pixels", fontsize=9)
    ax.set_title(f"semantic categories (top {len(names)})", fontsize=10)
    ax.tick_params(labelsize=8)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return to_data_uri(fig, tight=True)


def bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> str:
    """Horizontal bars of named values (e.g. per-class IoU)."""
    fig = Figure(figsize=(FIGSIZE[0] + 1.2, 0.8 + 0.24 * max(len(labels), 1)))
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    ax.barh(y, values, color=SERIES_COLOURS[0])
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    return to_data_uri(fig, tight=True)
