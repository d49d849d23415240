"""The web page's Memory panel: ‖∂ log P(x_t)/∂ e(x_j)‖ per earlier token and the run's gradient curve, API and browser."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'charrnn[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'charrnn[serve]'")

import charrnn  # noqa: E402
from charrnn.core.special_tokens import EOS_ID  # noqa: E402
from charrnn.lessons.gradients import loaded_run_flow, token_influence  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from charrnn.serve.memory import CURVE_HORIZON, CURVE_POSITIONS  # noqa: E402
from tests.serve_support import call, serving, train_tiny_runs  # noqa: E402
from tests.test_serve_browser import _browser  # noqa: E402

TEXT = "To be, or not to be: that is the question."


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> dict:
    lm_dir, s2s_dir = train_tiny_runs(tmp_path_factory.mktemp("memory"), shakespeare_head)
    return {"lm": charrnn.load(lm_dir), "s2s": charrnn.load(s2s_dir)}


def reference_influence(run, text: str, position: int) -> list[float]:
    """The same norms through the model's own forward pass, the embedding's output caught by a hook."""
    model, ids = run.model, run.tokenizer.encode(text)
    caught = {}

    def keep(module, inputs, output):
        output.retain_grad()
        caught["e"] = output

    handle = model.core.embedding.register_forward_hook(keep)
    try:
        out, _ = model(torch.tensor([[EOS_ID, *ids[:position]]]))
        model.log_probs(out[:, -1])[0, ids[position]].backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return caught["e"].grad[0, 1:].norm(dim=-1).tolist()


def test_influence_equals_the_models_own_backward_pass(runs: dict) -> None:
    run = runs["lm"]
    found = token_influence(run.model, run.tokenizer, TEXT, 20)
    assert (
        found.position == 20
        and len(found.tokens) == len(TEXT)
        and found.influence[20:] == [None] * (len(TEXT) - 20)
    )
    assert found.influence[:20] == pytest.approx(reference_influence(run, TEXT, 20), rel=1e-5)
    assert len(set(found.influence[:20])) == 20  # every earlier token moved it by its own amount
    assert token_influence(run.model, run.tokenizer, TEXT, 0).influence == [None] * len(TEXT)


def test_memory_route_answers_with_the_influence_and_the_runs_curve(runs: dict) -> None:
    run = runs["lm"]
    with serving(create_app(runs)) as url:
        status, data = call(url + "/api/memory", {"text": TEXT, "position": 12})
        assert status == 200, data
        assert data["influence"][:12] == pytest.approx(
            token_influence(run.model, run.tokenizer, TEXT, 12).influence[:12]
        )
        flow = loaded_run_flow(run, horizon=CURVE_HORIZON, positions=CURVE_POSITIONS)
        assert len(data["curve"]["hidden"]) == 2
        for got, want in zip(data["curve"]["hidden"], flow.hidden, strict=True):
            assert got == pytest.approx(want, rel=1e-6)
        assert data["curve"]["memory_horizons"] == flow.memory_horizons
        for body, message in (
            ({"text": TEXT, "position": len(TEXT)}, "position must be between 0 and"),
            ({"text": TEXT}, "position is required"),
            ({"text": "", "position": 0}, "Give some text"),
            ({"run": "s2s", "text": TEXT, "position": 1}, "is a seq2seq run"),
        ):
            status, data = call(url + "/api/memory", body)
            assert status == 400 and message in data["error"], data


def test_the_memory_panel_colours_earlier_tokens_and_draws_the_curve(runs: dict, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path / "profile")
    run = runs["lm"]
    try:
        with serving(create_app(runs)) as url:
            wait = WebDriverWait(driver, 60)
            driver.get(url + "/")
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            driver.find_element(By.ID, "memory-text").send_keys(TEXT)
            driver.find_element(By.ID, "memory-button").click()
            output = driver.find_element(By.ID, "memory-output")
            wait.until(
                lambda d: output.get_attribute("data-position") == str(len(TEXT) - 1)
            )  # starts at the last token
            spans = driver.find_elements(By.CSS_SELECTOR, "#memory-output .tok")
            assert len(spans) == len(TEXT)
            spans[15].click()
            wait.until(lambda d: output.get_attribute("data-position") == "15")
            want = token_influence(run.model, run.tokenizer, TEXT, 15).influence
            shown = driver.execute_script(
                "return [...document.querySelectorAll('#memory-output .tok')].map(s => s.dataset.influence ?? null)"
            )
            assert [float(v) for v in shown[:15]] == pytest.approx(want[:15], rel=1e-6) and shown[15:] == [
                None
            ] * (len(TEXT) - 15)
            colours = {
                s.value_of_css_property("background-color")
                for s in driver.find_elements(By.CSS_SELECTOR, "#memory-output .tok")[:15]
            }
            assert len(colours) > 3  # coloured by influence, not all alike
            assert "chosen" in driver.find_elements(By.CSS_SELECTOR, "#memory-output .tok")[15].get_attribute(
                "class"
            )
            lines = driver.find_elements(By.CSS_SELECTOR, "#memory-curve polyline")
            assert [line.get_attribute("data-points") for line in lines] == [str(CURVE_HORIZON + 1)] * 2
            assert "memory horizon" in driver.find_element(By.ID, "memory-note").text
            assert driver.find_element(By.ID, "error").is_displayed() is False
    finally:
        driver.quit()
