"""One self-contained HTML page holding the run's tables, sortable and searchable in a browser.

The tables are rendered by itables' DataTables bundle (offline, shipped inside the page), so
the page needs no network: it can be emailed or opened from the Snakemake report. Each table
is held once, as its exact TSV bytes (gzip, base64) and decompressed in the browser
(``DecompressionStream``): the page offers the same bytes as a download and stays small
(the demo's tables take 1.4 MB). The DataTables bundle, 0.7 MB of
JavaScript and CSS, is stored the same way, once per page.
"""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
from pathlib import Path

import itables
import pandas as pd
from itables.utils import find_package_file

#: Tables longer than this are held with numbers to 4 significant digits.
FULL_PRECISION_ROWS = 5000

#: The pieces of the page: its style, the viewer script, and the bundle loader.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.45em; } h2 { font-size: 1.15em; margin-top: 1.4em; }
a.num { font-weight: 600; color: #0b5cad; text-decoration: none;
        border-bottom: 1px dotted #0b5cad; }
a.num:hover { background: #e8f0fb; }
.src { color: #666; font-size: 0.85em; }
#tables-list { columns: 2; font-size: 0.9em; }
#tables-list a { text-decoration: none; color: #0b5cad; }
.viewed { border-top: 2px solid #ccd; margin-top: 1em; padding-top: 0.4em; }
.viewed h3 { font-size: 1em; margin: 0.2em 0; }
.note { color: #555; font-size: 0.9em; }
table.findings { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0 1em 1.2em; }
table.findings td, table.findings th { border-bottom: 1px solid #dde; padding: 2px 8px;
  text-align: left; }
table.findings caption { text-align: left; font-weight: 600; padding: 4px 0; }
table.dataTable td, table.dataTable th { font-size: 0.85em; }
"""

SCRIPT = """
const bundle = (async () => {
  const read = async (id) => {
    const bytes = Uint8Array.from(atob(document.getElementById(id).textContent.trim()),
                                  (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).text();
  };
  const style = document.createElement("style");
  style.textContent = await read("dt-css");
  document.head.appendChild(style);
  const url = URL.createObjectURL(new Blob([await read("dt-js")],
                                           { type: "application/javascript" }));
  const module = await import(url);
  URL.revokeObjectURL(url);
  return { module, read };
})();

const number = (cell) => (cell !== "" && !isNaN(Number(cell)) ? Number(cell) : cell);

async function showTable(path, keepOthers) {
  const { module, read } = await bundle;
  const holder = document.querySelector(`[data-tsv="${path}"]`);
  if (!holder) return;
  const text = await read(holder.id);
  const lines = text.replace(/\\n$/, "").split("\\n");
  const header = lines[0].split("\\t");
  const rows = lines.slice(1).map((line) => line.split("\\t").map(number));
  const area = document.getElementById("viewer");
  if (!keepOthers) area.innerHTML = "";
  const box = document.createElement("div");
  box.className = "viewed";
  box.dataset.path = path;
  const title = document.createElement("h3");
  title.textContent = `${path} (${rows.length} rows) `;
  const link = document.createElement("a");
  link.textContent = "download TSV";
  link.download = path.split("/").pop();
  link.href = URL.createObjectURL(new Blob([text], { type: "text/tab-separated-values" }));
  title.appendChild(link);
  const note = document.createElement("div");
  note.className = "note";
  note.textContent = holder.dataset.description;
  const table = document.createElement("table");
  table.className = "display compact nowrap";
  box.append(title, note, table);
  area.appendChild(box);
  const escaped = (name) => name.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const head = header.map((name) => `<th>${escaped(name)}</th>`);
  new module.ITable(table, {
    data_json: JSON.stringify(rows),
    table_html: `<table><thead><tr>${head.join("")}</tr></thead></table>`,
    layout: { topStart: "pageLength", topEnd: "search", bottomStart: "info",
              bottomEnd: "paging" },
    order: [],
    scrollX: true,
    style: { "table-layout": "auto", width: "100%", margin: "0" },
  });
  if (!keepOthers) box.scrollIntoView();
}

async function showAll() {
  for (const holder of document.querySelectorAll("[data-tsv]")) {
    await showTable(holder.dataset.tsv, true);
  }
  document.body.dataset.rendered = "all";
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-table]");
  if (target) {
    event.preventDefault();
    showTable(target.dataset.table, false);
  }
});
window.addEventListener("load", () => {
  if (location.hash === "#all") showAll();
});
"""


def _packed(data: bytes) -> str:
    """gzip (no timestamp, so the same bytes give the same page) then base64."""
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode("ascii")


def shown_bytes(path: Path | str) -> tuple[bytes, bool]:
    """The bytes the viewer holds for a table, and whether they are rounded: the file's own
    bytes, or for a table longer than ``FULL_PRECISION_ROWS`` its numbers to 4 significant
    digits (a DE table of 15,000 genes then takes half the space; the file keeps every
    digit)."""
    data = Path(path).read_bytes()
    if data.count(b"\n") <= FULL_PRECISION_ROWS:
        return data, False
    frame = pd.read_csv(io.BytesIO(data), sep="\t", keep_default_na=False, na_values=[""])
    return frame.to_csv(sep="\t", index=False, float_format="%.4g").encode(), True


def table_holders(tables: dict[str, tuple[Path | str, str]]) -> str:
    """``<script>`` elements holding each table's bytes: path in the report -> (file, note)."""
    parts = []
    for i, (name, (path, description)) in enumerate(tables.items()):
        data, rounded = shown_bytes(path)
        if rounded:
            description += (
                f" Shown and downloaded with 4 significant digits (over {FULL_PRECISION_ROWS:,}"
                f" rows); the file {name} keeps every digit."
            )
        parts.append(
            f'<script type="application/gzip" id="tsv-{i}" data-tsv="{html.escape(name)}" '
            f'data-description="{html.escape(description)}">'
            f"{_packed(data)}</script>"
        )
    return "\n".join(parts)


def table_list(tables: dict[str, tuple[Path | str, str]]) -> str:
    """A clickable list of every table the page holds."""
    items = [
        f'<li><a href="#" data-table="{html.escape(name)}">{html.escape(name)}</a></li>'
        for name in tables
    ]
    return f'<ul id="tables-list">{"".join(items)}</ul>'


def page(title: str, body: str, tables: dict[str, tuple[Path | str, str]]) -> str:
    """The whole page: ``body`` (HTML; elements with ``data-table="<path>"`` open that
    table), then the list of tables and the viewer, with the DataTables bundle inside."""
    bundle = Path(find_package_file("html/dt_bundle.js"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="generator" content="ifnsig, itables {itables.__version__}">
<style>{STYLE}</style></head>
<body>
{body}
<h2 id="tables">Tables</h2>
<p class="note">Every table of the run (the normalized-count and VST matrices aside, which
stay files under <code>results/de/</code>). Click one to sort, search and page through it,
or to download its TSV; a number above opens the table it comes from.</p>
{table_list(tables)}
<div id="viewer"></div>
<script type="application/gzip" id="dt-js">{_packed(bundle.read_bytes())}</script>
<script type="application/gzip" id="dt-css">{
        _packed(bundle.with_suffix(".css").read_bytes())
    }</script>
{table_holders(tables)}
<script>{SCRIPT}</script>
<script type="application/json" id="table-names">{json.dumps(list(tables))}</script>
</body></html>
"""
