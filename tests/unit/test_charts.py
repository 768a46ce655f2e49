"""The SVG charts (journey/charts.py): well-formed, accessible, and hostile text stays text."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from journey.charts import (
    Series,
    bar_chart,
    format_number,
    histogram,
    line_chart,
    stacked_bar_chart,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & "quotes" \x07 <img src=x onerror=alert(1)>'


def parse(svg: str) -> ET.Element:
    # Our own output, parsed to prove it is well-formed XML (nothing untrusted comes in).
    return ET.fromstring(svg)  # noqa: S314


def charts(name: str) -> dict[str, str]:
    """One of each kind, with ``name`` as every label, series name and title."""
    return {
        "line": line_chart(
            chart_id="c-line",
            title=name,
            labels=[name, "w2"],
            series=[Series(name, [1.5, 2.0]), Series("p90", [3.0, None])],
            x_label=name,
            y_label=name,
        ),
        "bar": bar_chart(
            chart_id="c-bar",
            title=name,
            labels=[name, "b"],
            values=[3, 4],
            x_label=name,
            y_label=name,
            horizontal=True,
        ),
        "stacked": stacked_bar_chart(
            chart_id="c-stacked",
            title=name,
            labels=[name, "b"],
            series=[Series(name, [1, 2]), Series("broken", [2, 0])],
            x_label=name,
            y_label=name,
        ),
        "histogram": histogram(
            chart_id="c-hist",
            title=name,
            edges=[0, 1, 4, math.inf],
            counts=[2, 0, 5],
            x_label=name,
            unit=name,
        ),
    }


@pytest.mark.parametrize("kind", ["line", "bar", "stacked", "histogram"])
def test_hostile_text_is_escaped_and_the_svg_stays_well_formed(kind: str) -> None:
    svg = charts(HOSTILE)[kind]
    assert "<script" not in svg
    assert "<img" not in svg
    assert "onerror=" not in svg.replace("onerror=alert", "")  # only as escaped text
    assert "&lt;script&gt;" in svg
    root = parse(svg)  # raises on anything not well-formed XML
    texts = "".join(root.itertext())
    assert "<script>" in texts  # the reader sees exactly the name, as text
    assert not root.findall(f".//{SVG}script")
    assert not any(name.startswith("on") for el in root.iter() for name in el.attrib)


@pytest.mark.parametrize("kind", ["line", "bar", "stacked", "histogram"])
def test_every_chart_is_a_named_described_image_without_style_or_links(kind: str) -> None:
    svg = charts("Returns")[kind]
    root = parse(svg)
    assert root.get("role") == "img"
    ids = root.get("aria-labelledby", "").split()
    found = {el.get("id"): el for el in root.iter() if el.get("id")}
    assert [found[i].tag for i in ids] == [f"{SVG}title", f"{SVG}desc"]
    assert found[ids[0]].text == "Returns"
    assert found[ids[1]].text
    # A strict Content-Security-Policy blocks style attributes; nothing may point elsewhere.
    assert not any("style" in el.attrib for el in root.iter())
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_the_numbers_are_written_on_the_chart() -> None:
    svg = stacked_bar_chart(
        chart_id="p",
        title="Promises",
        labels=["W47", "W48"],
        series=[Series("kept", [12, 7]), Series("broken", [3, 0])],
        x_label="week",
        y_label="promises",
    )
    root = parse(svg)
    drawn = [t.text for t in root.iter(f"{SVG}text") if t.text]
    assert {"12", "3", "15", "7"} <= set(drawn)  # segments and totals
    assert "W47: kept 12, broken 3" in root.findtext(f"{SVG}desc", "")


def test_series_differ_by_more_than_colour() -> None:
    svg = line_chart(
        chart_id="l",
        title="First reply",
        labels=["a", "b"],
        series=[Series("p50", [1, 2]), Series("p90", [3, 4])],
        x_label="week",
        y_label="hours",
    )
    root = parse(svg)
    lines = root.findall(f".//{SVG}polyline")
    assert len({el.get("stroke-dasharray") for el in lines}) == 2
    bars = stacked_bar_chart(
        chart_id="s",
        title="t",
        labels=["a"],
        series=[Series("kept", [1]), Series("broken", [1])],
        x_label="x",
        y_label="y",
    )
    patterns = parse(bars).findall(f".//{SVG}pattern")
    # One solid, one textured: telling them apart needs no colour vision.
    assert [len(list(p)) for p in patterns] == [1, 2]


def test_an_empty_period_says_so() -> None:
    svg = line_chart(chart_id="e", title="t", labels=[], series=[], x_label="week", y_label="hours")
    assert "No data in this period" in svg
    parse(svg)


def test_chart_ids_must_be_safe_for_an_id_attribute() -> None:
    with pytest.raises(ValueError, match="chart id"):
        bar_chart(chart_id='x" onload="', title="t", labels=[], values=[], x_label="", y_label="")


def test_numbers_read_as_people_write_them() -> None:
    assert [format_number(v) for v in (3.0, 12.5, 0.25, 1234, None, math.nan)] == [
        "3",
        "12.5",
        "0.25",
        "1\u202f234",
        "—",
        "—",
    ]
