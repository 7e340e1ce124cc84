"""The inline stylesheet of report.html (no external fonts, scripts or images)."""

CSS = """
:root { --fg: #1d1f23; --muted: #6b7280; --line: #e3e5e8; --bg: #ffffff; --warn: #9a3412; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); }
nav { position: sticky; top: 0; background: #f6f7f9; border-bottom: 1px solid var(--line);
      padding: 6px 20px; z-index: 1; }
nav a { color: #1f4f99; text-decoration: none; margin-right: 4px; }
main { max-width: 1500px; margin: 0 auto; padding: 8px 20px 40px; }
h1 { font-size: 22px; margin: 12px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.muted { color: var(--muted); }
.warn { color: var(--warn); }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 4px; text-align: left;
         vertical-align: top; }
th { background: #f6f7f9; font-weight: 600; }
table.num td + td { text-align: right; font-variant-numeric: tabular-nums; }
table.classes td { font-size: 13px; }
.sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px;
      vertical-align: -1px; border: 1px solid rgba(0,0,0,.25); }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; }
figure.plot { border: 1px solid var(--line); border-radius: 4px; padding: 6px; }
figure.plot figcaption { font-size: 12px; color: var(--muted); max-width: 420px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.pair { display: flex; gap: 6px; margin-bottom: 12px; padding: 6px; background: #f6f7f9;
        border-radius: 4px; width: fit-content; }
figure.card { border: 1px solid var(--line); border-radius: 4px; padding: 5px; background: #fff; }
figure.card img { display: block; height: auto; }
figure.card figcaption { font-size: 12px; margin-top: 4px; }
figure.card .note { color: var(--warn); }
ul.legend { list-style: none; padding: 0; margin: 3px 0 0; columns: 2; font-size: 11px; }
details { margin: 4px 0 10px; }
summary { cursor: pointer; color: #1f4f99; }
"""
