"""Reading a page back for assertions: Python's own HTML parser (entities decoded, as a browser reads them)."""

from __future__ import annotations

from html.parser import HTMLParser

# every element the page may contain: its own HTML, inline SVG from the charts and from Graphviz
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "footer", "section", "div", "span", "p",
    "h1", "h2", "h3", "h4", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "a", "code", "strong",
    "ul", "li", "br", "pre", "details", "summary", "figure", "figcaption",
    "svg", "g", "rect", "text", "tspan", "path", "polygon", "polyline", "ellipse",
}


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if "id" in a]

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        """Elements with every given attribute value (class: one of the element's classes)."""
        out = []
        for t, a in self.tags:
            if tag is not None and t != tag:
                continue
            ok = True
            for k, v in attrs.items():
                k = k.rstrip("_")
                if k == "class":
                    ok = ok and v in a.get("class", "").split()
                else:
                    ok = ok and a.get(k.replace("_", "-")) == v
            if ok:
                out.append(a)
        return out

    def pictures(self) -> list[str]:
        """The data-picture ids of the Graphviz pictures."""
        return [a["data-picture"] for t, a in self.tags if t == "svg" and "data-picture" in a]
