"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Nothing is downloaded: the test uses /usr/bin/chromium and /usr/bin/chromedriver and is skipped,
saying why, when they (or selenium) are not installed. Set CHARRNN_SCREENSHOT=path.png to keep
the screenshot it takes.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'charrnn[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'charrnn[serve]'")

import charrnn  # noqa: E402
from charrnn.lm.activations import collect_activations  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from tests.serve_support import serving, train_labelled_runs, train_tiny_runs  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TEXT = 'He said "to be" and left.'
SENTENCE = "To be, or not to be."


def _browser(profile: Path):
    """A headless Chromium from the system packages, or a skip that says what is missing."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver); browser test skipped")
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1500",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def test_the_page_generates_scores_and_shows_activations(tmp_path: Path, shakespeare_head: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _browser(tmp_path / "profile")
    lm_dir, s2s_dir = train_tiny_runs(tmp_path, shakespeare_head)
    runs = {"lm": charrnn.load(lm_dir), "s2s": charrnn.load(s2s_dir)}
    lm = runs["lm"]
    try:
        with serving(create_app(runs)) as url:
            wait = WebDriverWait(driver, 30)
            driver.get(url + "/")
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            assert "2×16 lstm" in driver.find_element(By.ID, "info").text

            # Generate: the streamed text is the library's seeded sample
            driver.find_element(By.ID, "prime").send_keys("KING")
            driver.find_element(By.ID, "seed").send_keys("3")
            for slider, value in (("temperature", "0.7"), ("length", "80")):
                driver.execute_script(
                    "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
                    "s.dispatchEvent(new Event('input'));",
                    slider,
                    value,
                )
            assert driver.find_element(By.ID, "temperature-value").text == "0.70"
            driver.find_element(By.ID, "generate-button").click()
            output = driver.find_element(By.ID, "sample-output")
            wait.until(lambda d: output.get_attribute("data-done") == "1")
            assert driver.execute_script("return arguments[0].textContent", output) == lm.sample(
                "KING", 80, 0.7, seed=3
            )

            # Score: one coloured span per token, with the scorer's probability
            driver.find_element(By.ID, "score-text").send_keys(SENTENCE)
            driver.find_element(By.ID, "score-button").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#score-output .tok"))
            spans = driver.find_elements(By.CSS_SELECTOR, "#score-output .tok")
            [want] = lm.score(SENTENCE)
            assert [s.get_attribute("data-token") for s in spans] == want.tokens
            for span, logprob in zip(spans, want.token_logprobs, strict=True):
                assert float(span.get_attribute("data-prob")) == pytest.approx(math.exp(logprob), rel=1e-5)
            colours = {s.value_of_css_property("background-color") for s in spans}
            assert len(colours) > 1  # coloured by probability, not all alike
            ActionChains(driver).move_to_element(spans[1]).perform()
            tooltip = driver.find_element(By.ID, "tooltip")
            wait.until(lambda d: tooltip.is_displayed())
            assert f"P(o | before) = {math.exp(want.token_logprobs[1]):.4f}" in tooltip.text
            assert len(tooltip.find_elements(By.CLASS_NAME, "alt")) == 5

            # Look inside: the heat map cells hold the library's activations
            driver.find_element(By.ID, "inside-text").send_keys(TEXT)
            Select(driver.find_element(By.ID, "state")).select_by_value("hidden")
            Select(driver.find_element(By.ID, "layer")).select_by_value("1")
            units = driver.find_element(By.ID, "units")
            units.clear()
            units.send_keys("0-3, 9")
            driver.find_element(By.ID, "inside-button").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#heatmap tr")) == 5)
            acts = collect_activations(lm.model, lm.tokenizer, TEXT)
            values = driver.execute_script(
                "return [...document.querySelectorAll('#heatmap tr')].map(tr => "
                "[tr.dataset.unit, [...tr.querySelectorAll('td')].map(td => Number(td.dataset.value))])"
            )
            assert [int(u) for u, _ in values] == [0, 1, 2, 3, 9]
            for unit, row in values:
                assert row == pytest.approx(acts.hidden[1, :, int(unit)].tolist(), abs=1e-6)
            Select(driver.find_element(By.ID, "pattern")).select_by_value("quotes")
            driver.find_element(By.ID, "find-button").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap tr[data-pattern='quotes']"))
            assert len(driver.find_elements(By.CSS_SELECTOR, "#heatmap tr")) == 9  # the pattern and 8 units
            ActionChains(driver).move_to_element(spans[4]).perform()  # a tooltip in the screenshot

            shot = tmp_path / "page.png"
            assert driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("CHARRNN_SCREENSHOT"):
                shutil.copy(shot, os.environ["CHARRNN_SCREENSHOT"])

            # Translate (a seq2seq run): the attention matrix as a heat map
            Select(driver.find_element(By.ID, "run")).select_by_value("s2s")
            wait.until(lambda d: d.find_element(By.ID, "translate").is_displayed())
            leftovers = driver.execute_script(  # the previous run's results are cleared, not left behind
                "return ['#sample-output', '#score-output *', '#heatmap tr']"
                ".map(q => q.startsWith('#sample') ? document.querySelector(q).textContent.length"
                " : document.querySelectorAll(q).length)"
            )
            assert leftovers == [0, 0, 0]
            assert not driver.find_element(By.ID, "generate").is_displayed()
            driver.find_element(By.ID, "source").send_keys("ein hund 5")
            driver.find_element(By.ID, "translate-button").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attention td"))
            [translation] = runs["s2s"].translate("ein hund 5", with_attention=True)
            assert driver.find_element(By.ID, "translation").text == translation.text.strip()
            weights = driver.execute_script(
                "return [...document.querySelectorAll('#attention tr')].slice(1).map(tr => "
                "[...tr.querySelectorAll('td')].map(td => Number(td.dataset.weight)))"
            )
            assert [w for row in weights for w in row] == pytest.approx(
                [w for row in translation.attention for w in row], abs=1e-6
            )
            assert driver.find_element(By.ID, "error").is_displayed() is False
    finally:
        driver.quit()


def test_the_page_classifies_and_generates_in_a_label(tmp_path: Path, trained_run: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _browser(tmp_path / "profile")
    classifier_dir, conditional_dir = train_labelled_runs(tmp_path)
    runs = {"classifier": charrnn.load(classifier_dir), "conditional": charrnn.load(conditional_dir)}
    runs["lm"] = charrnn.load(trained_run)
    try:
        with serving(create_app(runs)) as url:
            wait = WebDriverWait(driver, 30)
            driver.get(url + "/")
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            assert "5 labels" in driver.find_element(By.ID, "info").text

            # a classifier: Classify only; the top labels, P(label | text so far) per token, the tokens that moved it
            assert driver.find_element(By.ID, "classify").is_displayed()
            for panel in ("generate", "score", "inside", "memory", "translate"):
                assert not driver.find_element(By.ID, panel).is_displayed(), panel
            driver.find_element(By.ID, "classify-text").send_keys("Ivanov")
            driver.find_element(By.ID, "classify-button").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classify-labels .label-row"))
            [want] = runs["classifier"].classify("Ivanov")
            shown = driver.execute_script(
                "return [...document.querySelectorAll('#classify-labels .label-row')]"
                ".map(r => [r.dataset.label, Number(r.dataset.probability)])"
            )
            assert [label for label, _ in shown] == list(want.probabilities)
            assert [p for _, p in shown] == pytest.approx(list(want.probabilities.values()), abs=1e-5)
            tokens = driver.find_elements(By.CSS_SELECTOR, "#classify-prefixes th[data-index]")
            assert [t.text for t in tokens] == list("Ivanov")
            assert len(driver.find_elements(By.CSS_SELECTOR, "#classify-prefixes th.moved")) == 3
            rows = driver.find_elements(By.CSS_SELECTOR, "#classify-prefixes tr[data-label]")
            assert [r.get_attribute("data-label") for r in rows] == list(want.probabilities)
            assert all(len(r.find_elements(By.TAG_NAME, "td")) == len("Ivanov") for r in rows)
            assert driver.find_element(By.ID, "error").is_displayed() is False

            # a conditional run: Generate with a label selector, each text shown with its label
            Select(driver.find_element(By.ID, "run")).select_by_value("conditional")
            wait.until(lambda d: d.find_element(By.ID, "generate").is_displayed())
            assert driver.find_element(By.ID, "classify").is_displayed()
            assert not driver.find_element(By.ID, "score").is_displayed()
            assert not driver.find_elements(By.CSS_SELECTOR, "#classify-labels .label-row")  # cleared
            selector = driver.find_element(By.ID, "label")
            assert selector.is_displayed()
            values = [o.get_attribute("value") for o in Select(selector).options]
            assert values == ["", *runs["conditional"].labels]
            Select(selector).select_by_value("Russian")
            driver.find_element(By.ID, "seed").send_keys("3")
            number = driver.find_element(By.ID, "num")
            number.clear()
            number.send_keys("2")
            driver.find_element(By.ID, "generate-button").click()
            output = driver.find_element(By.ID, "sample-output")
            wait.until(lambda d: output.get_attribute("data-done") == "1")
            samples = driver.execute_script(
                "return [...document.querySelectorAll('#sample-output .labelled-sample')]"
                ".map(r => [r.dataset.label, r.dataset.text])"
            )
            expected = runs["conditional"].sample_with_labels(
                "Russian", num=2, length=300, temperature=0.8, seed=3
            )  # the page's defaults: temperature 0.8, length 300
            assert [tuple(s) for s in samples] == expected
            assert driver.find_element(By.ID, "error").is_displayed() is False

            # a language model: no label selector, no Classify
            Select(driver.find_element(By.ID, "run")).select_by_value("lm")
            wait.until(lambda d: d.find_element(By.ID, "score").is_displayed())
            assert driver.find_element(By.ID, "generate").is_displayed()
            assert not driver.find_element(By.ID, "label").is_displayed()
            assert not driver.find_element(By.ID, "classify").is_displayed()
    finally:
        driver.quit()
