"""The documentation site builds with --strict, and its generated pages say what the code says."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from metastasis.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _hook(name: str):  # docs/hooks/*.py are mkdocs hooks, not package modules
    spec = importlib.util.spec_from_file_location(f"{name}_hook", ROOT / f"docs/hooks/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands_hook():
    return _hook("commands")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_is_on_the_commands_page() -> None:
    hook = _commands_hook()
    page = hook.commands_markdown(build_parser())
    subs = _subcommands(build_parser())
    assert {"check", "train", "evaluate", "predict", "eda", "tune", "synth"} <= set(subs)
    for name, sub in subs.items():
        section = page.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert re.search(rf"`{re.escape(flag)}[` ]", section), f"{name} {flag} missing"
            if action.help and action.help != argparse.SUPPRESS:
                # a default the help states is in the default column; the rest in the description
                stated = hook._STATED_DEFAULT.search(action.help)
                text = hook._STATED_DEFAULT.sub("", action.help)
                for part in (text, stated.group(1) if stated else ""):
                    words = re.sub(r"\s+", " ", part)[:20].replace("|", "\\|")
                    assert words.replace("<", "&lt;").replace(">", "&gt;") in section


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    notebooks = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ROOT.glob("notebooks/*")}
    env = {**os.environ, "METASTASIS_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # building never writes outputs into the stored notebooks
    assert notebooks == {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ROOT.glob("notebooks/*")
    }
    return out


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", path.read_text())))


def test_the_site_has_every_page(site: Path) -> None:
    for page in (
        "index.html",
        "getting-started/index.html",
        "data/index.html",
        "commands/index.html",
        "python/index.html",
        "recipes/index.html",
        "models/index.html",
        "threshold/index.html",
        "bad-input/index.html",
        "scaling/index.html",
        "using-models/index.html",
        "reference/index.html",
        "notebooks/01_data_and_eda/index.html",
        "notebooks/04_use_a_model/index.html",
    ):
        assert (site / page).is_file(), page
    assert (site / "assets/eda-samples.png").is_file()


def test_generated_and_included_pages(site: Path) -> None:
    commands = _text(site / "commands/index.html")
    assert "--kaggle-submission" in commands and "--threshold-method" in commands
    assert "--epochs N 10 training epochs" in commands  # a training flag: the setting's default
    # the README sections the pages include are there, measured numbers and all
    recipes = _text(site / "recipes/index.html")
    assert "0.9516" in recipes and "configs/fast-cpu.yaml" in recipes
    assert "--label-smoothing" in recipes  # the options table generated from TrainConfig
    assert "torchrun" in _text(site / "scaling/index.html")
    python = _text(site / "python/index.html")
    assert "Predictor.from_checkpoint(run.checkpoint)" in python
    assert "id, probability, prediction, truth" in python  # README's "Output files"
    # the API reference is rendered from the docstrings
    reference = _text(site / "reference/index.html")
    assert "A table of" in reference and "predict_proba" in reference
    assert "Train ``cfg.model``" not in reference  # rendered, not raw reST


def test_notebooks_are_rendered_from_the_stored_files(site: Path) -> None:
    page = _text(site / "notebooks/02_train_and_evaluate/index.html")
    assert "YOUR DATA" in page and "metastasis.fit" in page


def test_the_built_site_has_no_broken_internal_link(site: Path) -> None:
    # the build itself fails on one (docs/hooks/links.py); this says so where it is read
    assert _hook("links").broken_links(site) == []
    config = (ROOT / "mkdocs.yml").read_text()
    assert "docs/hooks/links.py" in config and "docs/hooks/notebook_toc.py" in config
    # notebook 1's sidebar points at its "`check`: what is wrong with the data" heading
    page = (site / "notebooks/01_data_and_eda/index.html").read_text()
    assert 'id="check-what-is-wrong-with-the-data"' in page
    assert 'href="#check-what-is-wrong-with-the-data" class="md-nav__link"' in page
    assert 'href="#what-is-wrong-with-the-data"' not in page


def test_code_blocks_wrap_on_the_site(site: Path) -> None:
    css = (site / "assets/extra.css").read_text()
    assert "white-space: pre-wrap" in css and ".highlight-ipynb pre" in css
    assert 'href="../assets/extra.css"' in (site / "data/index.html").read_text()


def _fake_site(root: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<!doctype html><html><body>{body}</body></html>")
    return root


def test_the_link_check_finds_a_broken_anchor_and_passes_good_links(tmp_path: Path) -> None:
    from mkdocs.exceptions import PluginError

    links = _hook("links")
    good = {
        "index.html": '<h2 id="top">Top</h2><a href="#top">here</a> <a href="#">page top</a>'
        '<a href="guide/#step-2">step 2</a> <a href="https://example.org/#x">out</a>'
        '<img src="img/a%20b.png"> <a href="mailto:x@y.z">mail</a>',
        "guide/index.html": '<h3 id="step-2">2</h3><a href="../">home</a><a name="old"></a>'
        '<a href="../index.html#top">top</a> <a href="#old">old name</a>',
        "img/a b.png": "",
    }
    site = _fake_site(tmp_path / "good", good)
    assert links.broken_links(site) == []
    links.on_post_build({"site_dir": str(site)})  # passes

    bad = {**good, "guide/index.html": good["guide/index.html"] + '<a href="#step-3">3</a>'}
    site = _fake_site(tmp_path / "bad", bad)
    assert links.broken_links(site) == [
        "guide/index.html: #step-3 (no id 'step-3' in guide/index.html)"
    ]
    (site / "img/a b.png").unlink()
    assert links.broken_links(site) == [
        "guide/index.html: #step-3 (no id 'step-3' in guide/index.html)",
        "index.html: img/a%20b.png (no such file)",
    ]
    with pytest.raises(PluginError, match="2 broken internal links"):
        links.on_post_build({"site_dir": str(site)})


def test_a_notebook_sidebar_entry_is_pointed_at_its_heading() -> None:
    from mkdocs.structure.toc import AnchorLink

    toc = [AnchorLink("Intro", "intro", 1), AnchorLink(": what is wrong", "what-is-wrong", 2)]
    toc[0].children.append(AnchorLink("kept", "nowhere", 3))  # no unique match: left as it is
    html = (
        '<h1 id="intro">Intro<a class="anchor-link" href="#intro">¶</a></h1>'
        '<h2 id="check-what-is-wrong"><code>check</code>: what is wrong'
        '<a class="anchor-link" href="#check-what-is-wrong">¶</a></h2>'
    )
    assert _hook("notebook_toc").align_toc(toc, html) == 1
    assert (toc[1].id, toc[1].title) == ("check-what-is-wrong", "check: what is wrong")
    assert (toc[0].id, toc[0].children[0].id) == ("intro", "nowhere")


def test_every_page_citing_pcam_jpeg_points_to_what_it_is() -> None:
    # numbers a reader can reproduce: each page that cites the team's PCam-JPEG set says where
    # it is described (docs/data.md), and that section says how to rebuild it
    section = "PCam-JPEG: what it is and how to rebuild it"
    data = (ROOT / "docs/data.md").read_text()
    assert f"## {section}" in data and "benchmarks/make_pcam_jpeg.py" in data
    pages = [ROOT / "README.md", ROOT / "benchmarks/README.md", *sorted(ROOT.glob("docs/**/*.md"))]
    citing = [p for p in pages if "pcam-jpeg" in p.read_text().lower() and p.name != "data.md"]
    assert len(citing) >= 4
    for page in citing:
        text = page.read_text()
        assert "#pcam-jpeg-what-it-is-and-how-to-rebuild-it" in text or section in text, page
