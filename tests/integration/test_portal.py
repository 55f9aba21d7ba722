"""The web portal in real headless Chromium (WebDriver): log in, search by `郭*` and by a date
range, open a study and check that every thumbnail loaded, open the file status (the local site
holds the object; its SHA-256 is the stored file's), change the window preset of a preview, the
patient record lists every study, a `<script>` patient name renders as text, the study list's
pages, names in several character sets. Studies are stored with DCMTK storescu; the user is made
with `mifas user add`. A screenshot of the study page is saved under tests/output/."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pydicom
import pytest
from pydicom.data import get_charset_files
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import dicom_fixtures as F
from browser import OUTPUT_DIR, browser, fetch_with_session  # noqa: F401
from mifas_helpers import CHILD_ENV, MIFAS_BIN, MifasServer, object_path, storescu

USER, PASSWORD = "radiographer", "correct horse battery staple"
WAIT = 20  # seconds any page condition may take


def display_name(pn: str) -> str:
    """How the portal shows a person name: components by spaces, groups by ' = '."""
    groups = [" ".join(c for c in g.split("^") if c.strip()) for g in pn.split("=")]
    return " = ".join(g for g in groups if g)


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """A server holding PORTAL_STUDIES + pydicom's Japanese and Korean files, with one user."""
    work = tmp_path_factory.mktemp("portal")
    server = MifasServer(work / "server", name="portal")
    r = subprocess.run([str(MIFAS_BIN), "user", "add", USER, "--role", "viewer",
                        "--data-dir", str(server.data_dir)],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, f"mifas user add failed:\n{r.stdout}\n{r.stderr}"
    server.start()
    corpus = F.portal_corpus(work / "corpus")
    files = [i.path for items in corpus.values() for i in items]
    extra = {}
    for n in ("chrH31", "chrI2"):
        src = get_charset_files(f"{n}.dcm")
        assert src, f"pydicom's {n}.dcm is missing"
        extra[n] = pydicom.dcmread(src[0])
        files.append(shutil.copy(src[0], work / f"{n}.dcm"))
    multiframe = F.pydicom_file("examples_ybr_color.dcm")
    assert multiframe, "pydicom's examples_ybr_color.dcm is missing"
    r = storescu(server.host, server.port, files, called=server.aet)
    assert r.returncode == 0, f"storescu failed:\n{r.stdout}\n{r.stderr}"
    # JPEG baseline, 30 frames: proposed in its own transfer syntax
    r = storescu(server.host, server.port, [multiframe], called=server.aet, ts="1.2.840.10008.1.2.4.50")
    assert r.returncode == 0 and "Store Failed" not in r.stderr + r.stdout, f"storescu failed:\n{r.stdout}\n{r.stderr}"
    base = f"http://127.0.0.1:{server.http_port}"
    yield {"server": server, "base": base, "corpus": corpus, "extra": extra,
           "multiframe": pydicom.dcmread(multiframe, stop_before_pixels=True)}
    assert server.alive(), f"server died:\n{server.log_tail()}"
    assert server.stop() == 0, server.log_tail()


def wait(driver, condition, what: str):
    return WebDriverWait(driver, WAIT).until(condition, message=what)


def replaced(old):
    """The page holding `old` was replaced by the next one. Selenium's staleness_of asks the
    element whether it is enabled; while Chromium swaps documents that can fail with "Node with
    given id does not belong to the document" (a plain WebDriverException) instead of a
    StaleElementReferenceException: either way the old node is gone."""
    def gone(_driver):
        try:
            old.is_enabled()
            return False
        except (StaleElementReferenceException, WebDriverException):
            return True
    return gone


@pytest.fixture
def web(browser, portal):
    """The shared browser, logged in to the portal server."""
    base = portal["base"]
    browser.get(base + "/studies")
    if "/login" in browser.current_url:
        browser.find_element(By.NAME, "username").send_keys(USER)
        password = browser.find_element(By.NAME, "password")
        password.send_keys(PASSWORD)
        password.submit()
        wait(browser, lambda d: "/login" not in d.current_url, "login leaves the login page")
        browser.get(base + "/studies")
    wait(browser, EC.presence_of_element_located((By.ID, "filter")), "the study list page")
    return browser


def listed_uids(driver) -> list[str]:
    return [tr.get_attribute("data-uid") for tr in driver.find_elements(By.CSS_SELECTOR, "tr.study")]


def search(driver, **fields):
    """Fill the filter form like a user and submit it."""
    form = driver.find_element(By.ID, "filter")
    for name in ("patient_id", "patient_name", "date_from", "date_to", "modality", "accession"):
        field = form.find_element(By.NAME, name)
        # date inputs take typed text in the browser's locale: set the value the form submits
        driver.execute_script("arguments[0].value = arguments[1];", field, fields.get(name, ""))
    old = driver.find_element(By.ID, "summary")
    form.find_element(By.ID, "search").click()
    wait(driver, replaced(old), "the search results page")


def study_uid(portal, key: str) -> str:
    return portal["corpus"][key][0].study


def test_login_and_search_by_name(web, portal):
    # a typed name, with the wildcard, through the form
    form = web.find_element(By.ID, "filter")
    form.find_element(By.NAME, "patient_name").send_keys("郭*")
    old = web.find_element(By.ID, "summary")
    form.find_element(By.NAME, "patient_name").send_keys(Keys.ENTER)
    wait(web, replaced(old), "results")
    assert "patient_name=%E9%83%AD*" in web.current_url or "patient_name=%E9%83%AD%2A" in web.current_url
    assert listed_uids(web) == [study_uid(portal, "kuo1"), study_uid(portal, "kuo2")]  # newest first
    names = {td.text for td in web.find_elements(By.CSS_SELECTOR, "tr.study td.name")}
    assert names == {"Kuo Cheng-Ta = 郭 政達"}
    assert web.find_element(By.ID, "current-user").text == USER


def test_search_by_date_range(web, portal):
    search(web, date_from="2024-01-01", date_to="2024-02-29")
    assert listed_uids(web) == [study_uid(portal, "mueller"), study_uid(portal, "kuo1")]
    assert web.find_element(By.ID, "total").text == "2"
    search(web, date_from="2021-01-01", date_to="2021-12-31")
    assert listed_uids(web) == [study_uid(portal, "greek")]


def test_names_in_every_character_set(web, portal):
    web.get(portal["base"] + "/studies?per_page=200")
    text = web.find_element(By.ID, "studies").text
    for s in F.PORTAL_STUDIES:
        assert display_name(s.name) in text, s.key
    for ds in portal["extra"].values():  # ISO 2022 Japanese and Korean, as pydicom decodes them
        assert display_name(str(ds.PatientName)) in text, str(ds.PatientName)
    save_screenshot(web, "portal-study-list.png")


def test_script_in_a_patient_name_is_text(web, portal):
    search(web, patient_id="PORTAL-XSS")
    cell = web.find_element(By.CSS_SELECTOR, "tr.study td.name")
    # '=' separates PN component groups: the name shows as "<script>document.title = 'pwned'…"
    assert cell.text == "<script>document.title = 'pwned'</script> Eve"
    assert "pwned" not in web.title
    web.get(portal["base"] + "/patients/PORTAL-XSS")
    assert web.find_element(By.CSS_SELECTOR, ".patient-name").text.startswith("<script>")
    assert "pwned" not in web.title


def test_pagination_visits_every_study_once_newest_first(web, portal):
    web.get(portal["base"] + "/studies?per_page=2")
    seen, pages = [], 0
    while True:
        pages += 1
        seen += listed_uids(web)
        dates = [td.text for td in web.find_elements(By.CSS_SELECTOR, "tr.study td.date")]
        assert len(dates) <= 2
        nxt = web.find_elements(By.ID, "next")
        if not nxt:
            break
        old = web.find_element(By.ID, "summary")
        nxt[0].click()
        wait(web, replaced(old), "the next page")
    total = len(F.PORTAL_STUDIES) + len(portal["extra"]) + 1
    assert len(seen) == total and len(set(seen)) == total, seen
    assert pages == (total + 1) // 2
    assert seen[0] == study_uid(portal, "mueller")  # 2024-02-01, the newest
    assert web.find_element(By.ID, "prev")


def save_screenshot(driver, name: str):
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT_DIR / name
    assert driver.save_screenshot(str(shot)), "screenshot"
    assert shot.stat().st_size > 1000
    print(f"screenshot: {shot}")


def thumbnails_loaded(driver):
    imgs = driver.find_elements(By.CSS_SELECTOR, "img.thumb")
    return imgs and driver.execute_script(
        "return Array.from(document.querySelectorAll('img.thumb'))"
        ".every(i => i.complete && i.naturalWidth > 0);")


def test_study_page_thumbnails_and_screenshot(web, portal):
    search(web, patient_name="郭*")
    web.find_element(By.CSS_SELECTOR, f"tr.study[data-uid='{study_uid(portal, 'kuo1')}'] td.name a").click()
    wait(web, EC.presence_of_element_located((By.ID, "study")), "the study page")
    instances = web.find_elements(By.CSS_SELECTOR, "li.instance")
    assert sorted(i.get_attribute("data-uid") for i in instances) == \
        sorted(i.sop_instance for i in portal["corpus"]["kuo1"])
    wait(web, thumbnails_loaded, "every thumbnail loaded (naturalWidth > 0)")
    for li in instances:
        for cls in ("status", "preview", "record", "download"):
            assert li.find_element(By.CSS_SELECTOR, f"a.{cls}").get_attribute("href")
    save_screenshot(web, "portal-study-page.png")


def test_file_status_shows_the_local_copy(web, portal):
    item = portal["corpus"]["mueller"][0]
    web.get(f"{portal['base']}/studies/{item.study}")
    web.find_element(By.CSS_SELECTOR, f"li.instance[data-uid='{item.sop_instance}'] a.status").click()
    wait(web, EC.presence_of_element_located((By.ID, "sites")), "the file status page")
    stored = object_path(portal["server"].data_dir, item.sop_instance).read_bytes()
    assert web.find_element(By.ID, "sha256").text == hashlib.sha256(stored).hexdigest()
    assert web.find_element(By.ID, "size").get_attribute("data-bytes") == str(len(stored))
    sites = web.find_elements(By.CSS_SELECTOR, "tr.site")
    assert [s.get_attribute("data-state") for s in sites] == ["held"], [s.text for s in sites]
    assert "never" not in sites[0].find_elements(By.TAG_NAME, "td")[2].text  # stored at
    # the page's download link serves that very file
    link = web.find_element(By.CSS_SELECTOR, "a[download]").get_attribute("href")
    assert hashlib.sha256(fetch_with_session(web, link)).hexdigest() == hashlib.sha256(stored).hexdigest()


def test_window_preset_changes_the_image(web, portal):
    item = portal["corpus"]["kuo1"][0]
    web.get(f"{portal['base']}/instances/{item.sop_instance}/view")
    img = web.find_element(By.ID, "preview")
    wait(web, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img),
         "the preview loaded")
    before = img.get_attribute("src")
    web.find_element(By.CSS_SELECTOR, "button[data-preset='lung']").click()
    wait(web, lambda d: "preset=lung" in img.get_attribute("src"), "the lung preset applied")
    wait(web, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img),
         "the lung preview loaded")
    after = img.get_attribute("src")
    assert "preset=lung" in web.current_url, "the page URL follows (shareable)"
    assert fetch_with_session(web, before) != fetch_with_session(web, after)
    save_screenshot(web, "portal-preview-lung.png")
    # free window/level
    web.find_element(By.ID, "wc").send_keys("300")
    web.find_element(By.ID, "ww").send_keys("1000")
    web.find_element(By.ID, "apply-window").click()
    wait(web, lambda d: "wc=300" in img.get_attribute("src") and "ww=1000" in img.get_attribute("src"),
         "the free window applied")


def test_frame_slider(web, portal):
    mf = portal["multiframe"]
    web.get(f"{portal['base']}/instances/{mf.SOPInstanceUID}/view")
    slider = web.find_element(By.ID, "frame-slider")
    assert slider.get_attribute("max") == str(int(mf.NumberOfFrames) - 1)
    slider.send_keys(Keys.ARROW_RIGHT)
    img = web.find_element(By.ID, "preview")
    wait(web, lambda d: "frame=1" in img.get_attribute("src"), "frame 1 shown")
    assert web.find_element(By.ID, "frame-number").text == "1"


def test_patient_record_lists_every_study(web, portal):
    web.get(f"{portal['base']}/studies/{study_uid(portal, 'kuo2')}")
    web.find_element(By.ID, "patient-link").click()
    wait(web, EC.presence_of_element_located((By.ID, "patient-id")), "the patient page")
    assert web.find_element(By.ID, "patient-id").text == "PORTAL-KUO"
    assert listed_uids(web) == [study_uid(portal, "kuo1"), study_uid(portal, "kuo2")]
    assert web.find_element(By.CSS_SELECTOR, ".patient-name").text == "Kuo Cheng-Ta = 郭 政達"


def test_bad_input_is_a_clear_400(web, portal):
    for path, expected in [
        ("/studies?date_from=2024-02-30", "date_from must be a date as YYYY-MM-DD"),
        ("/studies/not-a-uid", "is not a DICOM UID"),
        ("/instances/1.2.3/view?preset=liver", "preset must be"),
    ]:
        web.get(portal["base"] + path)
        assert expected in web.find_element(By.TAG_NAME, "body").text, path
    web.get(portal["base"] + "/studies/1.2.3.4.5.6.7")
    assert "not found" in web.find_element(By.TAG_NAME, "body").text


def test_upload_in_the_browser_then_findscu(browser, portal, tmp_path):
    """An uploader picks two .dcm files in the upload form; each gets a 'stored' row, and DCMTK
    findscu finds them."""
    from pydicom.dataset import Dataset

    from find_clients import STUDY_ROOT, findscu

    server, base = portal["server"], portal["base"]
    r = subprocess.run([str(MIFAS_BIN), "user", "add", "uploader1", "--role", "uploader",
                        "--data-dir", str(server.data_dir)],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr  # the running server takes it over its admin socket
    items = F.generate_corpus(tmp_path / "up", patients=1, studies=1, series=1, instances=2,
                              rows=64, cols=64, tag="browser-upload")
    browser.delete_all_cookies()
    try:
        browser.get(base + "/upload")
        wait(browser, EC.presence_of_element_located((By.NAME, "username")), "the login page")
        browser.find_element(By.NAME, "username").send_keys("uploader1")
        password = browser.find_element(By.NAME, "password")
        password.send_keys(PASSWORD)
        password.submit()
        wait(browser, EC.presence_of_element_located((By.ID, "upload-form")), "the upload page after login")
        browser.find_element(By.ID, "files").send_keys("\n".join(str(i.path) for i in items))
        browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
        wait(browser, EC.presence_of_element_located((By.ID, "upload-results")), "the upload results")
        rows = browser.find_elements(By.CSS_SELECTOR, "#upload-results tbody tr")
        outcomes = sorted(r.find_element(By.CLASS_NAME, "outcome").text for r in rows)
        assert outcomes == ["stored", "stored"], [r.text for r in rows]
    finally:
        browser.delete_all_cookies()  # the next test logs in again as the viewer
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = items[0].study
    q.SeriesInstanceUID = items[0].series
    q.SOPInstanceUID = ""
    res = findscu(server, STUDY_ROOT, q, tmp_path / "find")
    assert res.final == 0x0000, res.log[-2000:]
    assert {str(ds.SOPInstanceUID) for _, ds in res.pending} == {i.sop_instance for i in items}
