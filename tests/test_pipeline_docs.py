"""The worked example of docs/pipelines.md, run as written against a local HTTP server."""

from __future__ import annotations

import http.server
import re
import sys
import threading
import types
from collections.abc import Iterator

import pytest

import djap
from tests.conftest import ROOT

PAGES = {"/a": "one two three", "/b": "four five", "/c": "six seven eight nine"}


def code_block(text: str, first_line: str) -> str:
    """The ```python block of the doc that starts with `first_line`."""
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"docs/pipelines.md has no code block starting {first_line!r}")


def load_module(name: str, code: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__package__ = name.rpartition(".")[0]
    sys.modules[name] = module
    exec(compile(code, f"docs/pipelines.md ({name})", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def links() -> types.ModuleType:
    """The doc's `links` app: its jobs.py and pipelines.py, imported once."""
    text = (ROOT / "docs" / "pipelines.md").read_text()
    package = types.ModuleType("links")
    package.__path__ = []
    sys.modules["links"] = package
    jobs = load_module("links.jobs", code_block(text, "# links/jobs.py"))
    pipelines = load_module("links.pipelines", code_block(text, "# links/pipelines.py"))
    return types.SimpleNamespace(jobs=jobs, pipelines=pipelines)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A proxy from the environment must not catch requests to this local server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self.path == "/urls.txt":
                body = "\n".join(base + path for path in PAGES)
            else:
                body = PAGES.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


async def test_the_word_count_example_fetches_counts_and_combines(links, server):
    WordCount, FetchUrlList = links.pipelines.WordCount, links.jobs.FetchUrlList
    pipeline = await WordCount.atrigger(FetchUrlList.Inputs(url=server + "/urls.txt"))
    await djap.run_num_jobs(max_num_workers=4, timeout=60, num_jobs=5)
    await pipeline.arefresh_from_db()
    assert pipeline.status == "done"
    rows = [j async for j in pipeline.jobs_in_order()]
    assert [(r.pipeline_step, r.name) for r in rows] == [
        (0, "FetchUrlList"),
        (1, "CountWords"),
        (1, "CountWords"),
        (1, "CountWords"),
        (2, "CombineCounts"),
    ]
    assert rows[-1].outputs == {"total": 9, "biggest": server + "/c"}
