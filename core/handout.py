"""The model answers as ONE standalone HTML handout: opens offline, prints cleanly on A4.

* plotly.js is inlined once (``plotly.offline.get_plotlyjs()``, shipped with the Python package): no CDN,
  no network request of any kind. Images inside figures are ``data:`` URIs.
* Maths is Unicode and HTML (sub/superscripts): KaTeX or MathJax would need a CDN.
* Print: ``@page { size: A4 }`` with 15 mm margins, figures drawn at the printable width (180 mm, 680 CSS
  pixels), a page break before each question, and no break inside a figure, an equation or a
  corrected weak answer.

No Streamlit here: the page calls :func:`build_handout` and offers the result as a download.
"""
from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

from core.answers import GLOSSARY, PAGES, _tex_fragment_html, inline_html

PRINT_WIDTH_PX = 680  # 210 mm - 2 x 15 mm = 180 mm at 96 CSS px per inch

_CSS = """
@page { size: A4; margin: 15mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Serif", Georgia, serif; font-size: 11pt; line-height: 1.45; color: #111;
       max-width: 180mm; margin: 0 auto; padding: 8mm 0; }
h1 { font-size: 20pt; margin: 0 0 4pt; }
h2 { font-size: 15pt; margin: 0 0 4pt; border-bottom: 1.5pt solid #0072B2; padding-bottom: 2pt; }
h3 { font-size: 12pt; margin: 10pt 0 4pt; }
.question { font-style: italic; margin: 2pt 0 6pt; }
.summary { background: #F1F6FB; border-left: 3pt solid #0072B2; padding: 4pt 8pt; margin: 6pt 0; }
.eq { font-family: "DejaVu Serif", "Cambria Math", serif; text-align: center; margin: 6pt 0; padding: 3pt 0;
      break-inside: avoid; page-break-inside: avoid; }
.m { font-family: "DejaVu Serif", "Cambria Math", serif; white-space: nowrap; }
sub, sup { font-size: 75%; line-height: 0; }
figure { margin: 8pt 0; break-inside: avoid; page-break-inside: avoid; }
figure .plot { width: 680px; max-width: 100%; }
figcaption { font-size: 9.5pt; color: #333; margin-top: 2pt; }
.weak { border: 1pt solid #D55E00; border-radius: 3pt; padding: 4pt 8pt; margin: 6pt 0; break-inside: avoid;
        page-break-inside: avoid; }
.weak .w { color: #8A3300; } .weak .c { color: #004D33; }
.see { font-size: 9.5pt; color: #444; }
section.q { break-before: page; page-break-before: always; }
section.q:first-of-type { break-before: auto; page-break-before: auto; }
section.glossary { break-before: page; page-break-before: always; }
table { border-collapse: collapse; width: 100%; font-size: 9.5pt; }
th, td { border: 0.5pt solid #999; padding: 3pt 5pt; vertical-align: top; text-align: left; }
th { background: #EEE; }
.meta { font-size: 9pt; color: #555; }
@media print { body { padding: 0; } a { color: inherit; text-decoration: none; } }
"""


def _figure_json(fig, width: int = PRINT_WIDTH_PX) -> str:
    """A figure as Plotly JSON at the printable width (a copy; the original is unchanged)."""
    import plotly.graph_objects as go
    f = go.Figure(fig)
    f.update_layout(width=width, autosize=False)
    return f.to_json()


def _block_html(block: tuple, figs: Mapping, seen: set) -> str:
    kind = block[0]
    if kind == "md":
        return inline_html(block[1])
    if kind == "eq":
        return f'<div class="eq">{block[2]}</div>'
    if kind == "fig":
        key, caption = block[1], block[2]
        if key not in figs:
            raise KeyError(f"figure {key!r} is missing")
        seen.add(key)
        return (f'<figure><div class="plot" id="fig-{html.escape(key)}" data-fig="{html.escape(key)}"></div>'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if kind == "weak":
        return (f'<div class="weak"><div class="w"><b>Weak answer:</b> {html.escape(block[1])}</div>'
                f'<div class="c"><b>Correction:</b> {inline_html(block[2])}</div></div>')
    if kind == "links":  # consecutive ("link", slug) blocks, merged into one line
        items = " · ".join(f"{PAGES[slug][2]} <b>{html.escape(PAGES[slug][1])}</b> (/{slug})" for slug in block[1])
        return f'<p class="see">Explore it in Latent Lab: {items}</p>'
    raise ValueError(f"unknown block kind {kind!r}")


def _merge_links(blocks: Sequence[tuple]) -> list[tuple]:
    """Consecutive ("link", slug) blocks as one ("links", [slug, ...]) block."""
    out: list[tuple] = []
    for b in blocks:
        if b[0] == "link" and out and out[-1][0] == "links":
            out[-1][1].append(b[1])
        elif b[0] == "link":
            out.append(("links", [b[1]]))
        else:
            out.append(b)
    return out


def glossary_html() -> str:
    rows = "".join(f"<tr><td><b>{html.escape(dl)}</b></td><td>{inline_html(prob)[3:-4]}</td>"
                   f"<td>{inline_html(what)[3:-4]}</td></tr>" for dl, prob, what in GLOSSARY)
    return ("<table><thead><tr><th>Deep-learning name</th><th>Probabilistic name</th><th>Meaning</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def build_handout(sections: Sequence[Mapping], figs: Mapping, meta: str = "", plotly_js: str | None = None) -> str:
    """The handout: one HTML string with every section of ``sections`` (``core.answers.answers``), every
    figure of ``figs`` that a section names, the glossary, and plotly.js inlined once.

    ``meta``: one line saying where the numbers came from (dataset, seed). ``plotly_js``: the library's
    source (default: ``plotly.offline.get_plotlyjs()``); tests may pass a stub."""
    if plotly_js is None:
        from plotly.offline import get_plotlyjs
        plotly_js = get_plotlyjs()
    seen: set[str] = set()
    body = []
    for s in sections:
        parts = [f'<section class="q" id="{html.escape(s["key"])}">', f"<h2>{html.escape(s['title'])}</h2>",
                 f'<p class="question">Exam question: {html.escape(s["question"])}</p>',
                 f'<div class="summary">{inline_html(s["summary"])}</div>']
        parts += [_block_html(b, figs, seen) for b in _merge_links(s["blocks"])]
        parts.append("</section>")
        body.append("\n".join(parts))
    data = {k: json.loads(_figure_json(figs[k])) for k in sorted(seen)}
    script = ("(function(){var F=" + json.dumps(data).replace("</", "<\\/") + ";"
              "document.querySelectorAll('.plot[data-fig]').forEach(function(el){var f=F[el.dataset.fig];"
              "Plotly.newPlot(el,f.data,f.layout,{staticPlot:true,displayModeBar:false,responsive:false});});})();")
    title = "Latent Lab: model answers"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_CSS}</style>"
        f"<script>{plotly_js}</script></head><body>\n"
        f"<h1>📝 {title}</h1>"
        f'<p class="meta">Three exam questions on autoencoders and variational autoencoders, each answered in '
        f"full with evidence computed from real trained models. {html.escape(meta)}</p>\n"
        + "\n".join(body)
        + '\n<section class="glossary" id="glossary"><h2>Glossary: deep-learning names and probabilistic names</h2>'
        + glossary_html() + "</section>\n"
        + f"<script>{script}</script></body></html>\n"
    )


def tex_free(text: str) -> bool:
    """True when ``text`` has no LaTeX left in it (no backslash commands, no $ delimiters)."""
    import re
    return not re.search(r"\\[A-Za-z]|\$", text)


__all__ = ["build_handout", "glossary_html", "tex_free", "PRINT_WIDTH_PX", "_tex_fragment_html"]
