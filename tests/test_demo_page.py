"""The demo page (`res2net serve --ui`) in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (.ci/run installs both; without them the browser test says so and skips). gradio_client is a
second client of the same page. The classifier is the digits model of the `learned_run` fixture; the detection page
serves a Faster R-CNN checkpoint written here (untrained: what is checked is that the page draws what
`predict-detection` draws, not what it finds)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from res2net.inference.session import load_model, preprocess_images

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: Where the browser test saves its screenshot when this is set (docs/images/demo.png is made this way).
SCREENSHOT_ENV = "RES2NET_DEMO_SCREENSHOT"


def _res2net(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("res2net")), *args]


class UiServer:
    def __init__(self, checkpoint: Path, precision: str, env: dict[str, str], *, classifier: bool = True) -> None:
        model = ["--model", "res2net50", "--served-name", "digits"] if classifier else []
        command = _res2net("serve", *model, "--checkpoint", str(checkpoint), "--port", "0", "--ui", "--precision",
                           precision)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        first = self.process.stdout.readline()  # type: ignore[union-attr]
        if not first.startswith("serving on "):
            self.stop()
            pytest.fail(f"server did not start: {first}{self.process.stdout.read()}")  # type: ignore[union-attr]
        self.url = first.split()[-1]
        deadline = time.monotonic() + 120
        while httpx.get(f"{self.url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/v2/health/ready").status_code == 200

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def _serve(learned_run: tuple[Path, float], tmp_path_factory: pytest.TempPathFactory,
           precision: str) -> Iterator[UiServer]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONWARNINGS": "ignore",
           "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    served = UiServer(learned_run[0] / "last.pth", precision, env)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def server(learned_run: tuple[Path, float], tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    yield from _serve(learned_run, tmp_path_factory, "fp32")


@pytest.fixture(scope="module")
def bf16_server(learned_run: tuple[Path, float], tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    yield from _serve(learned_run, tmp_path_factory, "bf16")


@pytest.fixture(scope="module")
def digit(digits_dir: Path, learned_run: tuple[Path, float]) -> tuple[Path, str]:
    """A validation image and the class the eager model gives it (what the page must show first)."""
    path = sorted((digits_dir / "val" / "3").iterdir())[0]
    model, info = load_model("res2net50", checkpoint_path=learned_run[0] / "last.pth")
    logits = model(preprocess_images([Image.open(path)], info))
    return path, info.class_names[int(logits.argmax())]


def test_the_page_is_mounted_beside_the_api(server: UiServer) -> None:
    assert httpx.get(f"{server.url}/ui/", follow_redirects=True).status_code == 200
    assert httpx.get(f"{server.url}/v2/models/digits").json()["name"] == "digits"


@pytest.mark.parametrize("served", ["server", "bf16_server"])
def test_gradio_client_classifies_through_the_page(served: str, digit: tuple[Path, str],
                                                   request: pytest.FixtureRequest) -> None:
    """At the server's precision: the bf16 server's page answers from its bf16 runner."""
    from gradio_client import Client, handle_file

    server: UiServer = request.getfixturevalue(served)
    precision = "bf16" if served == "bf16_server" else "fp32"
    assert f"Served at {precision}" in httpx.get(f"{server.url}/ui/config").text
    client = Client(f"{server.url}/ui/", verbose=False)
    started = time.monotonic()
    top, cam, timing = client.predict(handle_file(str(digit[0])), api_name="/classify")
    print(f"{served}: gradio_client upload to result in {time.monotonic() - started:.2f} s; the page says: {timing}")
    assert top["label"] == digit[1]
    assert len(top["confidences"]) == 5
    assert Image.open(cam).size[0] > 0 and "ms** from upload to result" in timing
    with pytest.raises(Exception, match="could not be decoded as an image"):
        client.predict(handle_file(str(Path(__file__))), api_name="/classify")
    assert server.ready()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"no browser to test the page in: {CHROMIUM} and {CHROMEDRIVER} are Debian's chromium and "
                    "chromium-driver packages, which .ci/run installs")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _upload_and_wait(driver: object, server: UiServer, image: Path, element: str, text: str,
                     seconds: float = 60) -> float:
    """Open the page, upload ``image`` and wait until the element with id ``element`` (or the body) shows ``text``;
    returns the seconds from upload to that."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{server.url}/ui/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, seconds)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image input[type=file]")))
    started = time.monotonic()
    upload.send_keys(str(image))
    locator = (By.ID, element) if element != "body" else (By.TAG_NAME, "body")
    wait.until(ec.text_to_be_present_in_element(locator, text))
    return time.monotonic() - started


def test_a_browser_uploads_a_digit_and_sees_its_class_and_cam(browser: object, server: UiServer,
                                                              digit: tuple[Path, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    seconds = _upload_and_wait(browser, server, digit[0], "timing", "from upload to result")
    top = browser.find_element(By.ID, "top").text  # type: ignore[attr-defined]
    title, first = (line.strip() for line in top.splitlines()[:2])  # the Label's title, then its top class
    assert (title, first) == ("Top-5 classes", digit[1]), top
    cam = browser.find_element(By.CSS_SELECTOR, "#cam img")  # type: ignore[attr-defined]
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", cam) > 0  # type: ignore[attr-defined]
    timing = browser.find_element(By.ID, "timing").text  # type: ignore[attr-defined]
    print(f"browser: upload to result in {seconds:.2f} s; the page says: {timing}")
    shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "demo.png")
    browser.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert Image.open(shot).size[0] >= 1000


def test_bad_input_is_a_message_on_the_page_and_the_server_stays_ready(browser: object, server: UiServer,
                                                                       tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"this is text, not a PNG")
    huge = tmp_path / "huge.png"
    buffer = io.BytesIO()
    Image.new("L", (7000, 7000)).save(buffer, format="PNG")  # 49 megapixels in a few hundred kB
    huge.write_bytes(buffer.getvalue())
    from selenium.webdriver.common.by import By

    oversized = tmp_path / "oversized.png"  # over the page's 20 MB upload limit: refused before it is stored
    with oversized.open("wb") as out:
        out.write(buffer.getvalue())
        out.write(os.urandom(21 * 2**20))
    for image, message in ((not_an_image, "could not be decoded"), (huge, "the limit is 40000000 pixels"),
                           (oversized, "exceed the maximum allowed size of 20")):
        _upload_and_wait(browser, server, image, "body", message)
        assert message in browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert server.ready()


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Faster R-CNN checkpoint at 64 px, and one canvas of the demo set it names as its validation split."""
    from res2net.data.demo_detection import CanvasSpec, write_detection_dataset
    from res2net.detection.builders import build_by_name, builder_kwargs
    from res2net.detection.checkpoint import DenseCheckpoint
    from res2net.detection.config import load_detection_config

    root = tmp_path_factory.mktemp("detection")
    data = root / "canvases"
    write_detection_dataset(data, spec=CanvasSpec(canvas_size=64, min_digit_size=12, max_digit_size=24))
    cfg = load_detection_config(["--data_dir", str(data), "--min_size", "64", "--max_size", "64",
                                 "--anchor_sizes", "8", "16", "32", "64", "128", "--score_threshold", "0.0"])
    kwargs = builder_kwargs(cfg, 11)
    torch.manual_seed(0)
    model = build_by_name(cfg.model, {**kwargs, "backbone_weights": None})
    checkpoint = DenseCheckpoint(builder=cfg.model, builder_kwargs=kwargs, model=model.state_dict(), epoch=0,
                                 step=0, config=cfg.to_dict(), class_names=[str(d) for d in range(10)])
    path = root / "detector.pth"
    torch.save(checkpoint.to_dict(), path)
    return path, sorted((data / "val").iterdir())[0]


def test_a_detection_checkpoint_is_served_as_a_page_that_draws_its_boxes(
    detector: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from gradio_client import Client, handle_file

    from res2net.detection.checkpoint import model_from_dense_checkpoint, read_dense_checkpoint
    from res2net.detection.predict import draw_prediction
    from res2net.inference.predict import open_image

    checkpoint, canvas = detector
    refused = subprocess.run(_res2net("serve", "--checkpoint", str(checkpoint)), capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "detection/segmentation checkpoint" in refused.stderr and "add --ui" in refused.stderr

    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONWARNINGS": "ignore",
           "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    served = UiServer(checkpoint, "fp32", env, classifier=False)
    try:
        client = Client(f"{served.url}/ui/", verbose=False)
        drawing, record, timing = client.predict(handle_file(str(canvas)), 0.0, api_name="/predict")
        loaded = read_dense_checkpoint(checkpoint)
        model = model_from_dense_checkpoint(loaded, checkpoint).eval()
        with torch.inference_mode():
            _, expected = draw_prediction(model, "detection", loaded.class_names,
                                          pil_to_tensor(open_image(canvas)), score_threshold=0.0,
                                          device=torch.device("cpu"))
        assert expected["detections"], "an untrained detector still proposes boxes at threshold 0"
        assert [d["label"] for d in record["detections"]] == [d["label"] for d in expected["detections"]]
        assert torch.allclose(torch.tensor([d["box"] for d in record["detections"]]),
                              torch.tensor([d["box"] for d in expected["detections"]]), atol=0.5)
        assert Image.open(drawing).size == Image.open(canvas).size
        assert "ms** from upload to result" in timing and f"{len(expected['detections'])} objects" in timing
        with pytest.raises(Exception, match="could not be decoded as an image"):
            client.predict(handle_file(str(Path(__file__))), 0.5, api_name="/predict")
        assert served.ready()
    finally:
        served.stop()
