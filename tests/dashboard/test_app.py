"""The Flask app: page contents and numbers, file serving limits, bad stores, 200 runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest
from store_builder import StoreBuilder

import dashboard.app as app_module
from dashboard.app import create_app
from pipeline.cli import build_parser, main
from pipeline.commands import dashboard as command


def _figure(html: str, plot_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" data-plot="{plot_id}">(.*?)</script>', html, re.S
    )
    assert match, f"no figure {plot_id}"
    return json.loads(match.group(1))


def _rows(html: str, table_id: str) -> list[str]:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    return re.findall(r"<tr[^>]* data-[^>]*>.*?</tr>", table, re.S)


@pytest.fixture(scope="module")
def client(small_root):
    return create_app(str(small_root[0])).test_client()


def test_runs_list(client, small_root):
    _, built = small_root
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    rows = _rows(html, "runs")
    assert [re.search(r'data-run="([^"]+)"', r).group(1) for r in rows] == [
        b.run_id for b in reversed(built)
    ]
    failed, cached, fresh = rows
    ap = '<td class="metric">AP</td>\n  <td class="num headline" data-metric="AP">{}</td>'
    assert ap.format("41.60") in fresh and ">blessed<" in fresh
    assert ap.format("43.00") in cached and "not blessed" in cached
    assert "(1/6 cached)" in cached
    assert "status-failed" in failed and ap.format("n/a") in failed
    assert all('<td class="task" data-task="object_detection">detection</td>' in r for r in rows)
    assert "3 run(s) in 1 store(s)" in html


def test_run_page_dag_executions_and_lineage(client, small_root):
    _, built = small_root
    html = client.get(f"/run?store=demo&run={built[1].run_id}").get_data(as_text=True)
    dag = _figure(html, "dag")
    states = {t["name"]: t["text"] for t in dag["data"]}
    assert states == {
        "cached": ["DetectionExampleGen"],
        "complete": ["Trainer", "QATTrainer", "TFLiteConverter", "Evaluator", "Pusher"],
    }
    assert list(dag["data"][1]["x"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(dag["layout"]["annotations"]) == 11  # one arrow per lineage edge
    rows = _rows(html, "executions")
    assert [re.search(r'data-component="(\w+)"', r).group(1) for r in rows][:2] == [
        "DetectionExampleGen", "Trainer",
    ]  # fmt: skip
    assert '<td class="cache">yes</td>' in rows[0] and '<td class="cache">no</td>' in rows[1]
    # The cached ExampleGen's output is the first run's artifact, linked under /files/.
    assert 'href="/files/demo/DetectionExampleGen/examples/0"' in rows[0]
    assert "from DetectionExampleGen" in rows[1]
    assert re.search(r"Trainer\.options\.train\.epochs</td><td[^>]*>6<", html)
    assert "nothing pushed: not blessed" in html
    assert 'id="resolved-config"' not in html  # no latest_run.json in this store


def test_run_page_links_the_latest_runs_config(small_root, tmp_path):
    root, built = small_root
    shutil.copytree(root / "demo", tmp_path / "demo", symlinks=True)
    (tmp_path / "demo" / "config.yaml").write_text("train:\n  epochs: 2\n")
    (tmp_path / "demo" / "latest_run.json").write_text(json.dumps({"run_id": built[2].run_id}))
    client = create_app(str(tmp_path)).test_client()
    latest = client.get(f"/run?store=demo&run={built[2].run_id}").get_data(as_text=True)
    assert 'id="resolved-config" href="/files/demo/config.yaml"' in latest
    older = client.get(f"/run?store=demo&run={built[1].run_id}").get_data(as_text=True)
    assert 'id="resolved-config"' not in older


def test_evaluation_page_numbers_and_charts(client, small_root):
    _, built = small_root
    html = client.get(f"/evaluation?store=demo&run={built[0].run_id}").get_data(as_text=True)
    rows = {re.search(r'data-variant="(\w+)"', r).group(1): r for r in _rows(html, "variants")}
    assert list(rows) == ["float32", "ptq_int8", "qat_int8"]
    assert '<td class="num" data-metric="AP">42.00</td>' in rows["float32"]
    assert '<td class="num" data-metric="AP">38.90</td>' in rows["ptq_int8"]
    assert '<td class="num" data-metric="AP">41.60</td>' in rows["qat_int8"]
    assert '<td class="num" data-metric="APs">n/a</td>' in rows["qat_int8"]  # -1: undefined
    assert "12988.3" in rows["float32"] and "25.10 / 27.61" in rows["qat_int8"]
    assert "-0.40" in rows["qat_int8"] and 'class="candidate"' in rows["qat_int8"]
    assert "BLESSED" in html and "drop 0.40 points, within the allowed 1" in html
    assert "(threshold 41.00)" in html  # float32 42.00 - 1 point
    size = _figure(html, "chart-size")["data"][0]
    assert size["x"] == [13.3, 4.4, 4.45] and size["y"] == pytest.approx([42.0, 38.9, 41.6])
    latency = _figure(html, "chart-latency")["data"][0]
    assert latency["x"] == [61.5, 24.2, 25.1]
    classes = _figure(html, "chart-classes")["data"]
    assert [t["name"] for t in classes] == ["float32", "ptq_int8", "qat_int8"]
    assert classes[0]["x"] == ["circle", "square", "triangle"]
    assert classes[0]["y"] == pytest.approx([37.0, 42.0, 47.0])


def test_evaluation_page_of_a_failed_run(client, small_root):
    _, built = small_root
    html = client.get(f"/evaluation?store=demo&run={built[2].run_id}").get_data(as_text=True)
    assert 'id="no-evaluation"' in html
    assert "Evaluator failed (DataError: no eval_annotations.json)" in html


def test_training_data(client, small_root):
    _, built = small_root
    assert 'data-training-url="/api/training?store=demo' in client.get(
        f"/training?store=demo&run={built[0].run_id}"
    ).get_data(as_text=True)
    data = client.get(f"/api/training?store=demo&run={built[0].run_id}").get_json()
    assert data["series"] == 4
    assert [c["title"] for c in data["charts"]] == ["loss", "learning rate", "AP"]
    loss = {t["name"]: t for t in data["charts"][0]["figure"]["data"]}
    assert loss["train loss"]["x"] == [1, 2, 3, 4]
    assert loss["train loss"]["y"] == pytest.approx([2.0, 1.0, 2 / 3, 0.5], rel=1e-6)
    ap = data["charts"][2]["figure"]["data"][0]
    assert ap["y"][-1] == pytest.approx(42.0, rel=1e-6)  # points
    html = client.get(f"/training?store=demo&run={built[2].run_id}").get_data(as_text=True)
    assert "Trainer" in html  # the failed run still trained


def test_compare_diffs_settings_and_metrics(client, small_root):
    _, built = small_root
    a, b = built[0].run_id, built[1].run_id
    html = client.get(f"/compare?a=demo|{a}&b=demo|{b}").get_data(as_text=True)
    changed = {re.search(r'data-key="([^"]+)"', r).group(1): r for r in _rows(html, "config-diff")}
    assert set(changed) == {"Trainer.options.train.epochs", "Trainer.options.train.learning_rate"}
    assert re.search(r">4</td><td[^>]*>6</td>", changed["Trainer.options.train.epochs"])
    assert "Settings (2 differ)" in html
    metrics = {
        re.search(r'data-metric="([^"]+)"', r).group(1): r for r in _rows(html, "metrics-diff")
    }

    def cells(metric: str, variant: str) -> list[str]:
        row = metrics[metric]
        columns = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:]
        index = ["float32", "ptq_int8", "qat_int8"].index(variant)
        return [c.strip() for c in columns[3 * index : 3 * index + 3]]

    assert cells("AP", "qat_int8") == ["41.60", "43.00", "+1.40"]
    assert cells("AP", "float32") == ["42.00", "45.00", "+3.00"]
    assert cells("APs", "ptq_int8") == ["n/a", "n/a", ""]
    assert cells("AP_/circle", "qat_int8") == ["36.60", "38.00", "+1.40"]
    assert cells("latency ms", "qat_int8") == ["25.10", "25.10", "+0.00"]
    figure = _figure(html, "chart-compare")
    assert [t["y"] for t in figure["data"]] == [
        pytest.approx([42.0, 38.9, 41.6]), pytest.approx([45.0, 40.0, 43.0]),
    ]  # fmt: skip
    assert client.get("/compare?a=demo&b=x").status_code == 400
    assert client.get(f"/compare?a=demo|nope&b=demo|{b}").status_code == 404


def test_files_inside_root_only(client, small_root, tmp_path_factory):
    root, built = small_root
    ok = client.get("/files/demo/Evaluator/evaluation/0/metrics.json")
    assert ok.status_code == 200 and ok.mimetype == "text/plain"
    assert json.loads(ok.data)["candidate"] == "qat_int8"
    assert ok.headers["Content-Security-Policy"] == "sandbox"
    listing = client.get("/files/demo/Evaluator/evaluation/0/").get_data(as_text=True)
    assert "report.html" in listing and "blessing.json" in listing
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("secret")
    link = root / "demo" / "escape"
    if not link.exists():
        os.symlink(outside, link)
    for url in (
        "/files/../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/demo/..%2f..%2f..%2fetc/passwd",
        "/files//etc/passwd",
        "/files/demo/escape/secret.txt",
    ):
        response = client.get(url, follow_redirects=True)  # "//" is merged by a redirect
        assert response.status_code in (403, 404), url
        assert b"secret" not in response.data and b"root:" not in response.data
    assert client.get("/files/demo/escape/secret.txt").status_code == 403
    assert client.get("/files/demo/no-such-file").status_code == 404
    assert client.get("/run?store=demo&run=nope").status_code == 404
    assert client.get("/run?store=nope&run=x").status_code == 404


def test_missing_empty_and_corrupt_stores_give_clear_pages(tmp_path):
    nothing = create_app(str(tmp_path)).test_client().get("/")
    assert nothing.status_code == 200
    assert b"No runs yet" in nothing.data and b"qatflow run" in nothing.data

    # A store TFX created but no run has written to yet.
    (tmp_path / "fresh").mkdir()
    StoreBuilder(str(tmp_path / "fresh"))  # registers types and the pipeline context only
    fresh = create_app(str(tmp_path)).test_client().get("/")
    assert fresh.status_code == 200 and b'id="no-runs"' in fresh.data
    assert b"No pipeline runs in 1 store(s) yet" in fresh.data

    for name, content in (("empty", b""), ("corrupt", b"\x00garbage" * 64)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.sqlite").write_bytes(content)
    client = create_app(str(tmp_path)).test_client()
    html = client.get("/").get_data(as_text=True)
    assert 'data-store="corrupt" data-kind="corrupt"' in html
    assert 'data-store="empty" data-kind="empty"' in html
    assert "No pipeline runs in 3 store(s) yet" in html and "Traceback" not in html
    page = client.get("/run?store=corrupt&run=x")
    assert page.status_code == 503
    assert b"not an SQLite database" in page.data and b"Traceback" not in page.data


def test_two_hundred_runs_stay_fast(many_root):
    root, built = many_root
    client = create_app(str(root)).test_client()
    timings = {}

    def timed(name: str, url: str) -> str:
        started = time.perf_counter()
        response = client.get(url)
        timings[name] = time.perf_counter() - started
        assert response.status_code == 200, url
        return response.get_data(as_text=True)

    first = timed("runs list (cold)", "/")
    timed("runs list (warm)", "/")
    assert "200 run(s) in 1 store(s)" in first and "page 1 of 4" in first
    assert len(_rows(first, "runs")) == 50
    last = timed("runs list page 4", "/?page=4")
    assert built[0].run_id in last and built[199].run_id not in last
    newest = built[199].run_id  # failing every 50th run: its Evaluator failed
    assert "status-failed" in _rows(first, "runs")[0]
    timed("run page", f"/run?store=many&run={built[150].run_id}")
    timed("evaluation page", f"/evaluation?store=many&run={built[150].run_id}")
    timed("compare", f"/compare?a=many|{built[10].run_id}&b=many|{newest}")
    print("\n" + "\n".join(f"  {k}: {v * 1000:.0f} ms" for k, v in timings.items()))
    assert timings["runs list (cold)"] < 5.0
    assert timings["runs list (warm)"] < 0.5
    assert max(timings.values()) < 5.0


def test_several_stores_in_one_list(small_root, tmp_path):
    root, built = small_root
    shutil.copytree(root / "demo", tmp_path / "a", symlinks=True)
    shutil.copytree(root / "demo", tmp_path / "b" / "c", symlinks=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.sqlite").write_bytes(b"\x00" * 512)
    client = create_app(str(tmp_path)).test_client()
    html = client.get("/").get_data(as_text=True)
    rows = _rows(html, "runs")
    stores = [re.search(r'<td class="mono">([^<]+)</td>', r).group(1) for r in rows]
    assert sorted(stores) == ["a", "a", "a", "b/c", "b/c", "b/c"]
    assert "6 run(s) in 3 store(s)" in html
    assert 'data-store="bad" data-kind="corrupt"' in html
    page = client.get(f"/evaluation?store=b/c&run={built[0].run_id}")
    assert page.status_code == 200 and b"41.60" in page.data


# --- issue 17: DNS rebinding: only localhost names, the bound host and allowed names --------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.evil.example:8080",
        "[::2]:8080",
        "",
    ],
)
@pytest.mark.parametrize("path", ["/", "/files/", "/api/training?store=demo&run=1"])
def test_a_foreign_host_header_gets_400(client, small_root, host, path):
    response = client.get(path, headers={"Host": host})
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "not allowed" in text and "\n" not in text.strip() and len(text) < 300
    assert str(small_root[0]) not in text  # nothing of the root is read


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8080",
        "LocalHost:8080",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "[::1]:8080",
    ],
)
def test_localhost_names_are_answered_with_or_without_port(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200


def test_allowed_names_and_the_bound_host_are_answered(small_root):
    app = create_app(str(small_root[0]), host="192.168.7.20", allowed_hosts=["Box.LAN", "fd00::7"])
    client = app.test_client()
    for host in ["box.lan", "box.lan:8080", "[fd00::7]:8080", "192.168.7.20:8080", "localhost"]:
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ["evil.example", "box.lan.evil.example", "192.168.7.21:8080", "[fd00::8]"]:
        assert client.get("/", headers={"Host": host}).status_code == 400, host


def test_qatflow_dashboard_passes_host_and_allow_host_to_the_app(small_root, monkeypatch, capsys):
    served = []
    real_create_app = app_module.create_app

    def create(root, **kwargs):
        app = real_create_app(root, **kwargs)
        monkeypatch.setattr(app, "run", lambda **_: served.append(app))  # no server
        return app

    monkeypatch.setattr(app_module, "create_app", create)
    monkeypatch.setattr(command, "_import_tensorflow", lambda: None)
    argv = ["-q", "dashboard", "--root", str(small_root[0]), "--host", "10.1.2.3"]
    assert main([*argv, "--allow-host", "box.lan", "--allow-host", "other.lan"]) == 0
    client = served[0].test_client()
    for host, status in [
        ("box.lan:8080", 200),
        ("other.lan", 200),
        ("10.1.2.3:8080", 200),
        ("localhost:8080", 200),
        ("evil.example", 400),
    ]:
        assert client.get("/", headers={"Host": host}).status_code == status, host
    assert main([*argv, "--allow-host", "http://box.lan/"]) == 2
    assert "--allow-host 'http://box.lan/': give a host name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dashboard", "--help"])
    assert "--allow-host NAME" in capsys.readouterr().out
