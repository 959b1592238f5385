"""Record what ComfyUI's frontend makes of editor-format workflows (the converter's ground truth).

For every editor-format workflow (a JSON object with ``nodes`` and ``links``, or with subgraph
definitions) this drives the frontend that a running ComfyUI serves, in headless Chromium, and
records the API graph that ``app.graphToPrompt()`` produces for it.

It starts nothing but Chromium: ComfyUI must already be running (``--comfyui-url``). Needs
``playwright`` (PyPI) and Debian's ``chromium`` (``apt-get install chromium``); Playwright's own
browser downloads are not used.

Usage (from the repository root, with an interpreter that has playwright, e.g. ComfyUI's venv)::

    python tests/ui_format/record_frontend.py --comfyui-url http://127.0.0.1:8188 \\
        --out tests/ui_format/recordings [--templates-dir DIR] [--handmade-dir DIR] \\
        [--object-info tests/ui_format/object_info.json] [--only NAME ...]

Sources:

* ``--templates-dir``: the ``templates/`` folder of the ``comfyui-workflow-templates`` package
  (default: found through the importing interpreter, so run it with ComfyUI's venv); every
  ``*.json`` in it that is editor format (index files are skipped). Recorded as
  ``source: "template"``, file ``<stem>.json``.
* ``--handmade-dir``: hand-made workflows (default ``tests/ui_format/handmade``), recorded as
  ``source: "handmade"``, file ``handmade_<stem>.json``.

Each recording is one JSON file::

    {"name": ..., "source": "template" | "handmade",
     "workflow": <the workflow exactly as given to the frontend>,
     "frontend_output": <graphToPrompt().output with every "_meta" removed>,   # or
     "frontend_error": "<what the frontend threw>",
     "frontend_console_errors": [...]}   # only when the page logged errors while converting

Per workflow the page runs ``app.loadGraphData(wf, true, false, null, {showMissingNodesDialog:
false, showMissingModelsDialog: false})`` then ``(await app.graphToPrompt()).output``; one page
is reused for all workflows, after waiting until ``window.app.graph`` exists and
``LiteGraph.registered_node_types.KSampler`` is defined (earlier, nodes come out without a
class). ``recordings/index.json`` lists every name with ``ok`` or ``error`` and the versions that
``/system_stats`` reports. ``--object-info`` also saves ``GET /object_info`` of the same ComfyUI,
key order kept; ``--layouts FILE.json.gz`` what the frontend builds for a fresh node of each class
(widgets: name, type, saved, queued; inputs: name, type, widget), which
``test_frontends.py`` compares with the converter's layouts. The frontend version recorded is the page's own (ComfyUI started with
``--front-end-root`` serves another than the one it pins); recordings made with another
frontend than 1.27.10 go to their own folder (``--out tests/ui_format/recordings-<version>``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import sys
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger("record_frontend")

HERE = Path(__file__).resolve().parent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

READY_JS = (
    "!!(window.app && window.app.graph && window.LiteGraph"
    " && window.LiteGraph.registered_node_types"
    " && window.LiteGraph.registered_node_types.KSampler)"
)

# Collects console errors in the page so a load that the frontend swallows (it shows a dialog
# instead of throwing) is still visible in the recording.
HOOK_JS = """() => {
  if (window.__recErrors) return;
  window.__recErrors = [];
  const orig = console.error.bind(console);
  console.error = (...args) => {
    try {
      window.__recErrors.push(args.map(a => (a && a.stack) ? String(a.stack) :
        (typeof a === 'object' ? JSON.stringify(a) : String(a))).join(' ').slice(0, 2000));
    } catch (e) { window.__recErrors.push('<unprintable console.error>'); }
    orig(...args);
  };
}"""

# Per workflow: load, then convert. Both frontends swallow an error thrown while the graph is
# being built (they show a dialog, log it and return), and 1.49.6 also drops a legacy group
# node it fails to turn into a subgraph; graphToPrompt would then convert what was half
# loaded. So the root graph's `configure` is wrapped to catch what it throws, and the page's
# console is watched for the group-node conversion failure: either makes the recording an
# error. The option names differ by version (1.27: show*Dialog; 1.49: deferWarnings,
# skipAssetScans); each version ignores the other's.
CONVERT_JS = """async (wf) => {
  window.__recErrors.length = 0;
  const errText = (e) => String((e && e.stack) ? e.stack : e).slice(0, 4000);
  const root = app.rootGraph || app.graph;
  const configure = root.configure;
  let configureError = null;
  root.configure = function (...args) {
    try { return configure.apply(this, args); } catch (e) { configureError = e; throw e; }
  };
  try {
    root.clear();
    await app.loadGraphData(wf, true, false, null,
      {showMissingNodesDialog: false, showMissingModelsDialog: false,
       deferWarnings: true, skipAssetScans: true, silentAssetErrors: true});
  } catch (e) {
    return {error: 'loadGraphData: ' + errText(e), console: [...window.__recErrors]};
  } finally {
    root.configure = configure;
  }
  if (configureError) {
    return {error: 'loadGraphData (swallowed): ' + errText(configureError),
            console: [...window.__recErrors]};
  }
  const dropped = window.__recErrors.find((t) => /Failed to convert group node/.test(t));
  if (dropped) {
    return {error: 'loadGraphData (group node dropped): ' + dropped.slice(0, 4000),
            console: [...window.__recErrors]};
  }
  try {
    const p = await app.graphToPrompt();
    return {output: p.output, console: [...window.__recErrors]};
  } catch (e) {
    return {error: 'graphToPrompt: ' + errText(e), console: [...window.__recErrors]};
  }
}"""


# Per node class: the widgets and input slots the frontend builds for a fresh node (default
# values, so a dynamic combo shows its default option): [name, type, saved in widgets_values,
# queued] per widget; [name, type, widget name] per input.
LAYOUTS_JS = """(types) => {
  const out = {};
  app.graph.clear();
  for (const t of types) {
    try {
      const n = LiteGraph.createNode(t);
      if (!n) { out[t] = {error: 'no node'}; continue; }
      app.graph.add(n);
      out[t] = {widgets: (n.widgets || []).map(w => [w.name, w.type, w.serialize !== false,
                  !(w.options && w.options.serialize === false)]),
                inputs: (n.inputs || []).map(i => [i.name, String(i.type),
                  i.widget ? i.widget.name : null])};
      app.graph.remove(n);
    } catch (e) { out[t] = {error: String(e).slice(0, 200)}; }
  }
  return out;
}"""


async def record_layouts(comfyui_url: str, types: list[str], out: Path) -> None:
    """What the frontend builds for a fresh node of every class, gzip-compressed JSON."""
    import gzip

    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser, page = await open_frontend(comfyui_url, pw)
        try:
            layouts = await page.evaluate(LAYOUTS_JS, types)
        finally:
            await browser.close()
    with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as stream:
        stream.write(json.dumps(layouts, sort_keys=True, separators=(",", ":")).encode())
    log.info("layouts: %d node classes -> %s", len(layouts), out)


def is_editor_workflow(data: Any) -> bool:
    """True for what the editor saves: nodes and links, or subgraph definitions."""
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("nodes"), list) and "links" in data:
        return True
    definitions = data.get("definitions")
    return isinstance(definitions, dict) and bool(definitions.get("subgraphs"))


def strip_meta(output: dict[str, Any]) -> dict[str, Any]:
    """The API graph without the frontend's ``_meta`` (titles), which ComfyUI ignores."""
    return {
        node_id: {k: v for k, v in node.items() if k != "_meta"}
        for node_id, node in output.items()
    }


def default_templates_dir() -> Path | None:
    spec = importlib.util.find_spec("comfyui_workflow_templates")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "templates"


def collect(templates_dir: Path | None, handmade_dir: Path | None) -> list[dict[str, Any]]:
    """The workflows to record: name, source, file name of the recording and the workflow."""
    items: list[dict[str, Any]] = []
    for source, folder, prefix in (
        ("template", templates_dir, ""),
        ("handmade", handmade_dir, "handmade_"),
    ):
        if folder is None:
            continue
        for path in sorted(folder.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if not is_editor_workflow(data):
                log.info("skipping %s: not editor format", path.name)
                continue
            items.append(
                {"name": path.stem, "source": source, "file": f"{prefix}{path.stem}.json",
                 "workflow": data}
            )
    return items


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read().decode("utf-8"))


async def open_frontend(comfyui_url: str, playwright: Any) -> tuple[Any, Any]:
    """Headless Chromium on the ComfyUI page, ready to convert. Returns (browser, page)."""
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    await page.goto(comfyui_url, wait_until="domcontentloaded")
    await page.wait_for_function(READY_JS, timeout=120_000)
    await page.evaluate(HOOK_JS)
    return browser, page


async def page_frontend_version(comfyui_url: str) -> str | None:
    """The version of the frontend the page really runs (ComfyUI's `/system_stats` names the
    one it pins, which `--front-end-root` can override)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser, page = await open_frontend(comfyui_url, pw)
        try:
            version = await page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || null")
        finally:
            await browser.close()
    return str(version) if version else None


async def record(comfyui_url: str, items: list[dict[str, Any]], out: Path) -> dict[str, str]:
    from playwright.async_api import async_playwright

    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    async with async_playwright() as pw:
        browser, page = await open_frontend(comfyui_url, pw)
        try:
            for item in items:
                result = await page.evaluate(CONVERT_JS, item["workflow"])
                rec: dict[str, Any] = {
                    "name": item["name"],
                    "source": item["source"],
                    "workflow": item["workflow"],
                }
                if "error" in result:
                    rec["frontend_error"] = result["error"]
                    status[item["file"]] = "error"
                    log.warning("%s: %s", item["name"], result["error"].splitlines()[0])
                else:
                    rec["frontend_output"] = strip_meta(result["output"])
                    status[item["file"]] = "ok"
                if result.get("console"):
                    rec["frontend_console_errors"] = result["console"]
                (out / item["file"]).write_text(
                    json.dumps(rec, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
                )
        finally:
            await browser.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=HERE / "recordings")
    parser.add_argument("--templates-dir", type=Path, default=None)
    parser.add_argument("--no-templates", action="store_true")
    parser.add_argument("--handmade-dir", type=Path, default=HERE / "handmade")
    parser.add_argument("--object-info", type=Path, default=None,
                        help="also save GET /object_info here")
    parser.add_argument("--only", nargs="*", default=None, help="record only these names")
    parser.add_argument("--layouts", type=Path, default=None,
                        help="also save each class's fresh-node widgets and inputs (.json.gz)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    url = args.comfyui_url.rstrip("/")
    templates_dir = None if args.no_templates else (args.templates_dir or default_templates_dir())
    if not args.no_templates and (templates_dir is None or not templates_dir.is_dir()):
        parser.error("no templates dir: pass --templates-dir or run with ComfyUI's interpreter")
    handmade_dir = args.handmade_dir if args.handmade_dir.is_dir() else None

    stats = http_json(f"{url}/system_stats")["system"]
    if args.object_info:
        info = http_json(f"{url}/object_info")
        args.object_info.write_text(
            json.dumps(info, indent=1, ensure_ascii=False) + "\n",
            encoding="utf-8")
        log.info("object_info: %d node classes -> %s", len(info), args.object_info)

    if args.layouts:
        asyncio.run(record_layouts(url, list(http_json(f"{url}/object_info")), args.layouts))
    items = collect(templates_dir, handmade_dir)
    if args.only:
        items = [i for i in items if i["name"] in args.only or i["file"] in args.only]
    status = asyncio.run(record(url, items, args.out))

    index_path = args.out / "index.json"
    index: dict[str, Any] = {}
    if index_path.exists():
        index = json.loads(index_path.read_text(encoding="utf-8"))
    index["versions"] = {
        "comfyui": stats.get("comfyui_version"),
        "frontend": asyncio.run(page_frontend_version(url))
        or stats.get("required_frontend_version"),
        "templates": stats.get("installed_templates_version"),
    }
    recordings = index.get("recordings", {})
    recordings.update(status)
    index["recordings"] = dict(sorted(recordings.items()))
    index_path.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")

    ok = sum(1 for s in status.values() if s == "ok")
    print(f"recorded {len(status)}: {ok} ok, {len(status) - ok} error -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
