"""One N-instance CT series (512×512 16-bit, dicom_fixtures.generate_corpus) in MIFAS and in
Orthanc 1.10 with its DICOMweb plugin (Debian orthanc-dicomweb), both on free local ports: the
shared setup of the DICOMweb series benchmarks (run_series.py, run_ohif.py).

    with SeriesArchives(work, instances=500) as a:
        a.mifas_url, a.mifas_auth     # http://127.0.0.1:port, "Basic ..." (a viewer user)
        a.orthanc_url                 # no authentication
        a.study, a.series, a.items
"""
from __future__ import annotations

import base64
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import dicom_fixtures as F  # noqa: E402
from mifas_helpers import MifasServer, storescu  # noqa: E402
from retrieve_peers import Orthanc  # noqa: E402
from test_portal_auth import PASSWORD, add_user  # noqa: E402

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER = "bench"


class SeriesArchives:
    def __init__(self, work: Path, instances: int = 500, tag: str = "dwbench"):
        self.work = Path(work)
        self.items = F.generate_corpus(self.work / "series", patients=1, studies=1, series=1,
                                       instances=instances, tag=tag)
        self.study, self.series = self.items[0].study, self.items[0].series
        self.user, self.password = USER, PASSWORD
        self.mifas_auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.mifas: MifasServer | None = None
        self.orthanc: Orthanc | None = None

    def start(self) -> "SeriesArchives":
        try:
            self.mifas = MifasServer(self.work / "mifas", name="mifas").start()
            self.orthanc = Orthanc(self.work / "orthanc", config={
                "Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}).start()
            add_user(self.mifas.data_dir, USER, "viewer")
            r = storescu(self.mifas.host, self.mifas.port, [c.path for c in self.items], timeout=600)
            assert r.returncode == 0, r.stderr[-2000:]
            stored = self.orthanc.upload([c.path for c in self.items])
            assert stored == len(self.items), stored
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def mifas_url(self) -> str:
        return f"http://127.0.0.1:{self.mifas.http_port}"

    @property
    def orthanc_url(self) -> str:
        return f"http://127.0.0.1:{self.orthanc.http_port}"

    def stop(self):
        for server in (self.mifas, self.orthanc):
            if server is not None:
                server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
