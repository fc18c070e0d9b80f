"""Static HTML pages of the leaderboard: the shared style sheet, the table-sorting script, tables and inline Markdown.

The leaderboard page (:mod:`benchmark.leaderboard`) and the verdict page
(:mod:`benchmark.verdict`) are self-contained HTML files (no server, no CDN):
both inline :data:`CSS` and :data:`JS` and build their tables and notes with
the functions here. This module imports nothing from ``benchmark``.
"""

from __future__ import annotations

import html
import re

__all__ = ["CSS", "JS", "html_table", "inline_html"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1400px;
padding:0 1rem;color:#1f2328;line-height:1.45}
h1{border-bottom:1px solid #d0d7de;padding-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #eaeef2}
.scroll{overflow:auto;max-width:100%;width:fit-content;max-height:80vh;margin:.6rem 0;border:1px solid #d0d7de}
table{border-collapse:separate;border-spacing:0;font-size:.9rem}
th,td{border-right:1px solid #d0d7de;border-bottom:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;
white-space:nowrap;background:#fff}
th{background:#f6f8fa;cursor:pointer;user-select:none;position:sticky;top:0;z-index:2}th:hover{background:#eaeef2}
table.board td:nth-child(1),table.board th:nth-child(1){position:sticky;left:0;z-index:1;min-width:2.5rem}
table.board td:nth-child(2),table.board th:nth-child(2){position:sticky;left:2.5rem;z-index:1;
box-shadow:2px 0 0 #d0d7de;max-width:22rem;white-space:normal}
table.board th:nth-child(1),table.board th:nth-child(2){z-index:3}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.published td{background:#fff8e5}.note{color:#57606a;margin:.2rem 0}code{background:#f6f8fa;padding:0 .2rem}
figure{display:inline-block;vertical-align:top;margin:.5rem 1rem .5rem 0}figure img{max-width:640px;width:100%}
figcaption{color:#57606a;font-size:.85rem}
"""
"""The style sheet of every page: sticky headers and first columns, scrolling tables, figures."""

JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th,col){
    th.addEventListener("click",function(){
      var asc=!th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc?"asc":"desc");
      var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute("data-sort"),y=b.cells[col].getAttribute("data-sort");
        if(x===""&&y==="")return 0;if(x==="")return 1;if(y==="")return -1;
        var nx=parseFloat(x),ny=parseFloat(y),r;
        if(!isNaN(nx)&&!isNaN(ny)&&String(nx)===x&&String(ny)===y){r=nx-ny;}else{r=x.localeCompare(y);}
        return asc?r:-r;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""
"""Click a header of a ``table.sortable`` to sort its rows by the cells' ``data-sort`` (numbers as numbers)."""


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain sortable HTML table (escaped text cells) inside a scrolling box.

    Parameters
    ----------
    headers : list of str
        Column headers.
    rows : list of list
        Cell values, one list per row; each is shown (and sorted) as ``str(value)``, HTML-escaped.

    Returns
    -------
    str
        One line of HTML: ``<div class="scroll"><table class="sortable">...</table></div>``.
    """
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td data-sort="{esc(str(c))}">{esc(str(c))}</td>' for c in row) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def inline_html(text: str) -> str:
    """Escape text and turn Markdown **bold**, *italic* and `code` into HTML.

    Parameters
    ----------
    text : str
        One line of Markdown-ish text (no links, no block elements).

    Returns
    -------
    str
        HTML-escaped text with ``<strong>``, ``<em>`` and ``<code>`` elements.
    """
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<!\*)\*([^*]+?)\*(?!\*)", r"<em>\1</em>", text)
    return re.sub(r"`([^`]+?)`", r"<code>\1</code>", text)
