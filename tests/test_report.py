"""The report renderer: one self-contained HTML file, Markdown with figure files, clear errors.

One real run (digits CNN, 20 samples on ISAAC-CE, a few seconds) feeds every test; variants
(another arch, zero-skip counts, Monte Carlo levels) are edits of its ``result.json`` dict.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis import published, report
from analysis.run import simulate
from sim.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("summary", "energy", "area", "latency", "skipped")
FIGURES = ("fig-energy-layers", "fig-energy-components", "fig-area", "fig-latency")
VOID = {"meta", "img", "br", "hr", "link", "input"}


@pytest.fixture(scope="module")
def result() -> dict:
    run = simulate(REPO / "arch_configs" / "isaac_32nm.yaml",
                   REPO / "workloads" / "digits_cnn.yaml", samples=20, progress=False)
    return json.loads(json.dumps(run.to_json()))


def montecarlo(values=(0.0, 0.1, 0.2), chips=4, param="crossbar.cell.variation.sigma") -> dict:
    """A synthetic montecarlo.json: accuracy falls with the level value."""
    levels = []
    for li, value in enumerate(values):
        accs = [0.98 - 0.1 * li - 0.01 * c for c in range(chips)]
        rows = [{"seed": 100 + c, "hardware_accuracy": a, "float_accuracy": 0.99,
                 "energy_per_inference_nj": 1200.0 + c, "latency_per_inference_s": 6.5e-6}
                for c, a in enumerate(accs)]
        summary = {}
        for key in ("hardware_accuracy", "energy_per_inference_nj", "latency_per_inference_s"):
            xs = [r[key] for r in rows]
            mean = sum(xs) / len(xs)
            summary[key] = {"mean": mean, "std": 0.01, "ci_low": mean * 0.99,
                            "ci_high": mean * 1.01, "n": len(xs)}
        levels.append({"label": f"level {li}", "param": param, "value": value, "chips": rows,
                       "summary": summary})
    return {"kind": "imcsim-montecarlo", "arch": "isaac_ce_32nm", "workload": "digits_cnn",
            "samples": 20, "chips": chips, "base_seed": 100, "confidence": 0.95,
            "levels": levels}


class Doc(HTMLParser):
    """Checks nesting and collects ids, figure images, external references and table cells."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.images: dict[str, list[str]] = {}
        self.external: list[str] = []
        self.tables: dict[str, list[list[list[str]]]] = {}
        self._section = self._figure = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements {self.stack}"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        for attr in ("src", "href"):
            if a.get(attr) and not a[attr].startswith(("data:", "#")):
                self.external.append(f"{tag} {attr}={a[attr]}")
        if tag == "section":
            self._section = a["id"]
            self.tables[self._section] = []
        elif tag == "figure":
            self._figure = a["id"]
            self.images[self._figure] = []
        elif tag == "img" and self._figure:
            self.images[self._figure].append(a["src"])
        elif tag == "table":
            self.tables[self._section].append([])
        elif tag == "tr":
            self.tables[self._section][-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "figure":
            self._figure = None
        elif tag in ("td", "th"):
            self.tables[self._section][-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, section: str, table: int = 0) -> dict[str, list[str]]:
        """Rows of a section's table keyed by their first cell."""
        return {r[0]: r[1:] for r in self.tables[section][table]}


def number(cell: str) -> float:
    return float(re.match(r"[-+]?[\d,.]+(e[-+]?\d+)?", cell).group(0).replace(",", ""))


@pytest.fixture(scope="module")
def html_mc(result) -> Doc:
    return Doc(report.render_html(result, montecarlo()))


def test_html_has_every_section_and_figure_as_inline_png(html_mc):
    for sid in (*SECTIONS, "variation", "paper"):
        assert sid in html_mc.ids
    for fid in (*FIGURES, "fig-variation"):
        (src,) = html_mc.images[fid]
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):], validate=True).startswith(PNG)


def test_html_is_self_contained(result):
    text = report.render_html(result, montecarlo())
    assert Doc(text).external == []
    for bad in ('src="http', "<link", "<script", "url("):
        assert bad not in text


def test_summary_numbers_match_the_result(html_mc, result):
    rows = html_mc.rows("summary")
    assert rows["effective energy efficiency"][1] == "TOPS/W (dense-equivalent)"
    assert number(rows["effective energy efficiency"][0]) == pytest.approx(
        result["tops_per_w"], rel=1e-3)
    assert number(rows["effective throughput"][0]) == pytest.approx(result["gops"], rel=1e-3)
    assert number(rows["executed throughput"][0]) == pytest.approx(result["gops_executed"],
                                                                   rel=1e-3)
    assert number(rows["executed energy efficiency"][0]) == pytest.approx(
        result["tops_per_w_executed"], rel=1e-3)
    assert "throughput" not in rows and "energy efficiency" not in rows  # never unlabeled
    assert number(rows["hardware accuracy"][0]) == pytest.approx(
        100 * result["hardware_accuracy"], abs=0.01)
    assert number(rows["latency per inference"][0]) == pytest.approx(
        1e6 * result["latency_per_inference_s"], rel=1e-3)
    assert number(rows["inferences per second"][0]) == pytest.approx(
        result["inferences_per_s"], rel=1e-3)
    assert number(rows["chip area"][0]) == pytest.approx(result["area_mm2"], rel=1e-3)
    assert rows["execution"][0] == "pipelined"


def test_energy_and_area_tables_add_up(html_mc, result):
    by_layer = html_mc.rows("energy", 0)
    n = result["samples"]
    for lr in result["layers"]:
        assert number(by_layer[lr["name"]][1]) == pytest.approx(
            lr["energy_total_pj"] / n / 1e3, rel=1e-3)
    components = html_mc.rows("energy", 2)
    full = sum(result["energy_by_component_pj"].values()) / 1e3
    assert number(components["total"][0]) == pytest.approx(full, rel=1e-3)
    assert number(components["ADC"][1]) == pytest.approx(
        100 * result["energy_by_component_pj"]["adc"] / 1e3 / full, abs=0.05)
    area = html_mc.rows("area")
    assert number(area["total"][0]) == pytest.approx(result["area_mm2"], rel=1e-3)
    assert number(area["HyperTransport"][0]) == pytest.approx(22.88, rel=1e-3)


def test_latency_table_per_layer(html_mc, result):
    rows = html_mc.rows("latency")
    for lr in result["layers"]:
        row = rows[lr["name"]]
        assert number(row[2]) == lr["cycles_busy"]
        assert number(row[3]) == lr["cycles_latency"]
        assert number(row[4]) == pytest.approx(
            1e6 * lr["cycles_latency"] / result["digital_clock_hz"], rel=1e-3)
        assert number(row[-1]) == pytest.approx(
            100 * lr["cycles_busy"] / lr["cycles_latency"], abs=0.05)


def test_variation_section_only_with_montecarlo(result):
    doc = Doc(report.render_html(result))
    assert "variation" not in doc.ids and "fig-variation" not in doc.ids
    assert set(SECTIONS) <= set(doc.ids)


def test_variation_table_holds_each_level(html_mc):
    mc = montecarlo()
    accuracy = html_mc.rows("variation", 0)
    for lv in mc["levels"]:
        s = lv["summary"]["hardware_accuracy"]
        row = accuracy[lv["label"]]
        assert number(row[1]) == len(lv["chips"])
        assert [number(c) for c in row[2:]] == pytest.approx(
            [100 * s["mean"], 100 * s["std"], 100 * s["ci_low"], 100 * s["ci_high"]], rel=1e-3)


def test_single_level_without_value_still_draws(result):
    doc = Doc(report.render_html(result, montecarlo(values=(None,), param=None)))
    (src,) = doc.images["fig-variation"]
    assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)


def test_paper_section_for_isaac_only(html_mc, result):
    rows = html_mc.rows("paper")
    ce = rows["computational efficiency CE"]
    assert number(ce[1]) == 478.95
    assert number(ce[2]) == pytest.approx(result["peak_gops_per_mm2"], rel=1e-3)
    assert number(ce[3]) == pytest.approx(100 * (result["peak_gops_per_mm2"] / 478.95 - 1),
                                          abs=0.01)
    assert ce[4] == "read-2nd" and "Table IV" in ce[5]
    power = rows["chip power, full activity"]
    assert number(power[2]) == pytest.approx(65.8, rel=0.01)
    other = dict(result, arch="no_published_design")
    doc = Doc(report.render_html(other))
    assert "paper" not in doc.ids


def test_published_rows_are_complete_and_resolvable(result):
    for arch, rows in published.PUBLISHED.items():
        assert rows, arch
        for row in rows:
            assert row.basis in published.BASES and row.source and row.unit
    for row in published.rows_for(result):
        assert published.metric_value(result, row.metric) is not None, row.metric


def test_workload_specific_rows_only_for_that_workload(result, monkeypatch):
    row = published.PublishedValue(metric="hardware_accuracy", label="MNIST accuracy", unit="",
                                   value=0.988, source="test", basis="read",
                                   workload="lenet5_mnist")
    monkeypatch.setitem(published.PUBLISHED, "test_design", (row,))
    assert published.rows_for(dict(result, arch="test_design")) == ()
    assert published.rows_for(dict(result, arch="test_design", workload="lenet5_mnist")) == (row,)
    with pytest.raises(ValueError, match="basis"):
        published.PublishedValue(metric="x", label="x", unit="", value=1, source="s",
                                 basis="guessed")


def test_skipped_without_skipping_says_so(html_mc):
    assert "fig-skipped" not in html_mc.ids
    rows = html_mc.rows("skipped")
    assert number(rows["total"][1]) == 0


def test_skipped_figure_and_shares_with_skipping(result):
    skipping = copy.deepcopy(result)
    ev = skipping["layers"][0]["events"]
    ev["adc_conversions_skipped"] = ev["adc_conversions"] // 3
    ev["adc_conversions"] -= ev["adc_conversions_skipped"]
    doc = Doc(report.render_html(skipping))
    assert "fig-skipped" in doc.images
    row = doc.rows("skipped")[skipping["layers"][0]["name"]]
    assert number(row[2]) == pytest.approx(100 / 3, abs=0.1)


def test_markdown_has_tables_and_writes_linked_figures(result, tmp_path):
    text = report.render_markdown(result, montecarlo(), tmp_path / "figs", "figs/")
    for title in ("## Summary", "## Energy", "## Area", "## Latency and utilization",
                  "## Skipped conversions", "## Accuracy under variation",
                  "## Comparison with the published design"):
        assert title in text
    assert "| quantity | value | unit |" in text
    cell = re.search(r"\| effective energy efficiency \| ([^|]+) \| TOPS/W \(", text).group(1)
    assert number(cell) == pytest.approx(result["tops_per_w"], rel=1e-3)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(f"figs/{f}.png" for f in (*FIGURES, "fig-variation"))
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(PNG)


def test_markdown_without_folder_writes_no_figures(result, tmp_path):
    text = report.render_markdown(result)
    assert "![" not in text and "| component | mm2 | share |" in text


def test_write_report_defaults_beside_result(result, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    (tmp_path / "montecarlo.json").write_text(json.dumps(montecarlo()))
    html_path = report.write_report(path)
    assert html_path == tmp_path / "report.html"
    assert "fig-variation" in Doc(html_path.read_text()).ids
    md_path = report.write_report(path, "md", out=tmp_path / "out" / "r.md")
    assert (tmp_path / "out" / "r_figures" / "fig-area.png").read_bytes().startswith(PNG)
    assert "(r_figures/fig-area.png)" in md_path.read_text()


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not an imcsim result.json"),
    ('{"arch": "x"}', "missing workload"),
    ('{"arch": "a", "workload": "w", "samples": 1, "layers": [{"name": "l"}], '
     '"energy_by_component_pj": {}, "area_by_component_mm2": {}}', "layers[0] lacks"),
])
def test_bad_input_is_a_user_error_naming_the_path(tmp_path, content, message):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=re.escape(message)) as info:
        report.write_report(path)
    assert str(path) in str(info.value)


def test_bad_montecarlo_and_format_are_user_errors(result, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    mc = tmp_path / "mc.json"
    mc.write_text(json.dumps(dict(montecarlo(), kind="something-else")))
    with pytest.raises(UserError, match="expected 'imcsim-montecarlo'") as info:
        report.write_report(path, montecarlo_path=mc)
    assert str(mc) in str(info.value)
    with pytest.raises(UserError, match="pdf"):
        report.write_report(path, "pdf")


def test_montecarlo_as_run_montecarlo_writes_it(result):
    """YAML paths for arch and workload, string level values, the whole test split."""
    mc = montecarlo(values=("reram", "sram"))
    mc.update(arch=str(REPO / "arch_configs" / "isaac_32nm.yaml"),
              workload=str(REPO / "workloads" / "digits_cnn.yaml"), samples=None)
    text = report.render_html(result, mc)
    assert "Note: this Monte Carlo run" not in text and "the whole test split" in text
    assert Doc(text).rows("variation", 0)["level 1"][0] == "crossbar.cell.variation.sigma = sram"
    mc["arch"] = "arch_configs/other.yaml"
    assert "Note: this Monte Carlo run" in report.render_html(result, mc)


def test_cli_run_report_and_report_command(tmp_path, capsys):
    from analysis.cli import main

    out = tmp_path / "run"
    assert main(["run", "isaac_32nm", "digits_cnn", "--samples", "20", "--out", str(out),
                 "--quiet", "--report", "html"]) == 0
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(out / "result.json"), "--format", "md"]) == 0
    assert (out / "report.md").is_file()
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_run_printout_compares_cap_ram_with_the_paper_for_its_workload():
    """``imcsim run``'s comparison lines: CAP-RAM's area rows for any workload, the accuracy
    row only for the paper's workload, and imcsim's value (and its difference) moves with the
    result."""
    from analysis.run import _paper_lines

    class Result:
        def __init__(self, data):
            self.data = data

        def to_json(self):
            return self.data

    base = {"arch": "cap_ram_65nm", "workload": "lenet5_mnist_capram", "area_mm2": 0.179,
            "area_by_component_mm2": {"sram_array": 0.112054, "cisar_adc": 0.013728},
            "hardware_accuracy": 0.9861}
    text = "\n".join(_paper_lines(Result(base)))
    assert "Chen et al., CAP-RAM" in text
    acc = [ln for ln in text.splitlines() if "LeNet-5 MNIST accuracy" in ln]
    assert len(acc) == 1 and "0.9861" in acc[0] and "-0.19 %" in acc[0]
    share = [ln for ln in text.splitlines() if "SRAM array share" in ln][0]
    assert "0.626" in share.split("fraction")[0].split()[-1]
    worse = "\n".join(_paper_lines(Result({**base, "hardware_accuracy": 0.9})))
    assert "-8.91 %" in [ln for ln in worse.splitlines() if "LeNet-5 MNIST" in ln][0]
    unmeasured = "\n".join(_paper_lines(Result({**base, "hardware_accuracy": float("nan")})))
    assert "nan" not in [ln for ln in unmeasured.splitlines() if "LeNet-5 MNIST" in ln][0]
    other = "\n".join(_paper_lines(Result({**base, "workload": "digits_cnn"})))
    assert "macro area" in other and "accuracy" not in other
    assert _paper_lines(Result({**base, "arch": "my_chip"})) == []
