#!/usr/bin/env python3
"""OHIF viewer benchmark (issue 12, "Benchmark", last bullet): time for OHIF 3.13.2 to show the
first image of a 500-instance CT series (512×512 16-bit), MIFAS against Orthanc 1.10 with its
DICOMweb plugin holding the same series (series_fixture.py, as run_series.py), same proxy
(tests/integration/ohif_proxy.py: OHIF's dist and /dicom-web on one origin), same headless
Chromium (tests/integration/ohif_browser.py, WebGL through SwiftShader).

One trial: a fresh Chromium with a new profile (cold HTTP cache, empty storage), a script
installed before OHIF's own (CDP Page.addScriptToEvaluateOnNewDocument) that polls the viewport
canvas on every animation frame, navigation to `/viewer?StudyInstanceUIDs=...`; the figure is
performance.now() — milliseconds since navigation start — at the first frame in which the
viewport canvas is not one flat colour. Trials alternate MIFAS / Orthanc (the order flips every
trial); one untimed warm-up trial each goes first (reported, not in the median). The proxy also
times each DICOMweb request it forwards (request to last byte): the series `/metadata` and the
requests made before the first image are reported beside the viewer's figure.

  bench/dicomweb/run_ohif.py [--instances 500] [--trials 7] [--no-results]
"""
from __future__ import annotations

import argparse
import datetime
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
import ohif_browser  # noqa: E402
from browser import OUTPUT_DIR  # noqa: E402
from ohif_proxy import OHIF_VERSION, OhifProxy  # noqa: E402
from series_fixture import SeriesArchives  # noqa: E402

OHIF_TIMER = re.compile(r'"(studyToDisplaySetsLoaded|studyToFirstImage): ([0-9.]+) ms"')
TRIAL_TIMEOUT = 180.0  # s for one viewer load; far above what either server needs


def trial(proxy: OhifProxy, study: str, screenshot: Path | None = None) -> dict:
    """One cold viewer load; {"first_image_ms", "requests": the DICOMweb requests ended by the
    time the figure was read, "renderer"}."""
    driver = ohif_browser.start_chromium()
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": ohif_browser.FIRST_IMAGE_HOOK_JS})
        proxy.clear_requests()
        driver.get(f"{proxy.url}/viewer?StudyInstanceUIDs={study}")
        # OHIF's own timers (console.time/timeEnd, logged at debug level): from the moment the
        # viewer asks for the study to its metadata / to the first rendered image; they leave
        # out the app's start-up, which is the same for both servers
        ohif: dict[str, float] = {}
        first = []

        def done(d) -> bool:
            if not first and (t := d.execute_script("return window.__mifasFirstImage;")) is not None:
                first.append(float(t))
            for entry in d.get_log("browser"):
                if m := OHIF_TIMER.search(entry["message"]):
                    ohif.setdefault(m[1], float(m[2]))
            return bool(first) and "studyToFirstImage" in ohif

        # the page records the moment itself (performance.now()); the poll only decides when to
        # read it, so its period does not enter the figure
        WebDriverWait(driver, TRIAL_TIMEOUT, poll_frequency=0.05).until(
            done, message=f"no image in the viewport (or no OHIF timer) via {proxy.url}")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
            print(f"screenshot: {screenshot}")
        return {"first_image_ms": first[0], "requests": proxy.requests, "ohif": ohif,
                "renderer": ohif_browser.webgl_renderer(driver),
                "browser": driver.capabilities.get("browserVersion", "?")}
    finally:
        driver.quit()


def metadata_ms(requests) -> float | None:
    ms = [r[3] * 1000 for r in requests if r[1].endswith("/metadata")]
    return max(ms) if ms else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print every DICOMweb request of every trial")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mifas-ohif-bench-"))
    busy_before = harness.heavy_procs()  # other work on the shared CPUs, reported with the run
    archives = SeriesArchives(work, instances=args.instances).start()
    proxies = {}
    results = {"mifas": [], "orthanc": []}
    warm = {}
    try:
        proxies["mifas"] = OhifProxy(archives.mifas_url, (archives.user, archives.password), name="MIFAS").start()
        proxies["orthanc"] = OhifProxy(archives.orthanc_url, None, name="Orthanc").start()
        for who in ("mifas", "orthanc"):
            warm[who] = trial(proxies[who], archives.study, OUTPUT_DIR / f"ohif-bench-{who}.png")
            failed = [r for r in warm[who]["requests"] if r[2] >= 400]
            assert not failed, f"{who}: failed DICOMweb requests {failed[:5]}"
            print(f"warm-up {who}: {warm[who]['first_image_ms']:.0f} ms, "
                  f"{len(warm[who]['requests'])} requests", flush=True)
        for i in range(args.trials):
            order = ("mifas", "orthanc") if i % 2 == 0 else ("orthanc", "mifas")
            for who in order:
                r = trial(proxies[who], archives.study)
                failed = [q for q in r["requests"] if q[2] >= 400]
                assert not failed, f"{who}: failed DICOMweb requests {failed[:5]}"
                results[who].append(r)
                if args.verbose:
                    for method, path, status, secs, size in r["requests"]:
                        print(f"    {status} {secs * 1000:7.1f} ms {size:>9} B {method} {path[:150]}")
                print(f"trial {i + 1} {who}: {r['first_image_ms']:.0f} ms (series metadata "
                      f"{metadata_ms(r['requests']) or 0:.0f} ms)", flush=True)
        busy_after = harness.heavy_procs()
    finally:
        for p in proxies.values():
            p.stop()
        archives.stop()
        shutil.rmtree(work, ignore_errors=True)  # ~800 MB: the series, and both archives' copies

    def p50(who, f):
        return statistics.median(f(r) for r in results[who])

    first = {w: p50(w, lambda r: r["first_image_ms"]) for w in results}
    spread = {w: (min(r["first_image_ms"] for r in results[w]), max(r["first_image_ms"] for r in results[w]))
              for w in results}
    to_image = {w: p50(w, lambda r: r["ohif"]["studyToFirstImage"]) for w in results}
    to_sets = {w: p50(w, lambda r: r["ohif"].get("studyToDisplaySetsLoaded", float("nan"))) for w in results}
    meta = {w: p50(w, lambda r: metadata_ms(r["requests"]) or float("nan")) for w in results}
    n = len(archives.items)
    renderer = warm["mifas"]["renderer"] or "no WebGL"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    requests_seen = {w: len(warm[w]["requests"]) for w in warm}
    ratio = first["orthanc"] / first["mifas"]
    text = (
        f"## {now[:10]} — DICOMweb: OHIF {OHIF_VERSION}, time to the first image of a {n}-instance CT "
        f"series, MIFAS vs Orthanc (bench/dicomweb/run_ohif.py, commit {commit}, {now} UTC)\n\n"
        f"One {n}-instance series of 512×512 16-bit CT in MIFAS (embedded, local disk, HTTP Basic as a "
        f"viewer user) and in Orthanc 1.10 + DICOMweb plugin 1.7 (default \"Full\" metadata). OHIF's "
        f"prebuilt dist and /dicom-web on one origin through the same Python proxy "
        f"(tests/integration/ohif_proxy.py: imageRendering wadors, study lazy load), headless Chromium "
        f"{warm['mifas']['browser']} (WebGL: {renderer}), a new browser profile per trial (cold cache). Figure: navigation start "
        f"of `/viewer?StudyInstanceUIDs=…` to the first animation frame whose viewport canvas is not "
        f"blank, measured in the page. {args.trials} trials each, interleaved (order flipped every "
        f"trial), after one warm-up each. The viewer's own start-up (a 17 MB bundle parsed, WebGL on "
        f"a software rasteriser, on the 2 shared CPUs) is inside both figures; OHIF's own timers "
        f"(console.time, from the viewer asking for the study) leave it out. Processes above 20 % CPU "
        f"when the run began: {busy_before or 'none'}; at its end: {busy_after or 'none'}.\n\n"
        "| | MIFAS | Orthanc | ratio |\n|---|---:|---:|---:|\n"
        f"| navigation → first image, p50 | {first['mifas']:.0f} ms | {first['orthanc']:.0f} ms | "
        f"**{ratio:.2f}×** |\n"
        f"| the same, min – max | {spread['mifas'][0]:.0f} – {spread['mifas'][1]:.0f} ms | "
        f"{spread['orthanc'][0]:.0f} – {spread['orthanc'][1]:.0f} ms | — |\n"
        f"| warm-up trial (first load after the import) | {warm['mifas']['first_image_ms']:.0f} ms | "
        f"{warm['orthanc']['first_image_ms']:.0f} ms | — |\n"
        f"| OHIF `studyToFirstImage` (study requested → first image), p50 | {to_image['mifas']:.0f} ms | "
        f"{to_image['orthanc']:.0f} ms | {to_image['orthanc'] / to_image['mifas']:.2f}× |\n"
        f"| OHIF `studyToDisplaySetsLoaded` (study requested → QIDO series list in; with lazy load the series `/metadata` comes after it), p50 | "
        f"{to_sets['mifas']:.0f} ms | {to_sets['orthanc']:.0f} ms | {to_sets['orthanc'] / to_sets['mifas']:.2f}× |\n"
        f"| series `/metadata` as the proxy saw it (request → last byte), p50 | {meta['mifas']:.0f} ms | "
        f"{meta['orthanc']:.0f} ms | {meta['orthanc'] / meta['mifas']:.1f}× |\n"
        f"| DICOMweb requests OHIF had made when the figure was read (warm-up trial) | "
        f"{requests_seen['mifas']} | {requests_seen['orthanc']} | — |\n"
    )
    claim = (
        f"| OHIF {OHIF_VERSION}: navigation → first image of a {n}-instance CT series (headless Chromium, "
        f"cold cache, same proxy), p50 | {first['mifas']:,.0f} ms (OHIF studyToFirstImage "
        f"{to_image['mifas']:,.0f} ms) | Orthanc 1.10 + DICOMweb 1.7: {first['orthanc']:,.0f} ms "
        f"({to_image['orthanc']:,.0f} ms) | **{ratio:.2f}×** ({to_image['orthanc'] / to_image['mifas']:.2f}× "
        f"without the app's start-up) | — (none given) | {now} | {commit} |"
    )
    print(text)
    print(claim)
    if not args.no_results:
        results_md = REPO / "bench" / "RESULTS.md"
        with tempfile.NamedTemporaryFile("w", suffix=".md", encoding="utf-8") as section:
            section.write(text)
            section.flush()
            harness.insert_run(results_md, section.name)
        set_claim(results_md, f"| OHIF {OHIF_VERSION}: navigation → first image", claim)
    return 0


def set_claim(results_md: Path, prefix: str, row: str) -> None:
    """Put `row` into the "Current claims" table: in place of the row starting with `prefix`,
    else after the table's last row."""
    lines = results_md.read_text(encoding="utf-8").split("\n")
    start = lines.index("## Current claims")
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| metric |"))
    end = header
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    for i in range(header, end + 1):
        if lines[i].startswith(prefix):
            lines[i] = row
            break
    else:
        lines.insert(end + 1, row)
    results_md.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
