#!/usr/bin/env python3
"""Deterministic catalog of the C-FIND benchmark data (patients, studies, series).

Usage: catalog.py OUT_DIR --patients N [--seed S]

Writes OUT_DIR/patients.tsv, studies.tsv, series.tsv (UTF-8, tab-separated, one header line).
Every patient i is generated from its own RNG (seed, i), so the catalog of N patients is exactly
the first N patients of any larger catalog with the same seed: the 100k set is a subset of the 1M
set. Each patient has STUDIES studies x SERIES series x INSTANCES instances; instance UIDs are
derived from the series UID by `instance_uid()` (the same function is in bulk_index.rs).

Names: ~70 % English/US (ASCII, US-census-like surname frequencies plus a long synthetic tail),
~15 % European names in ISO_IR 100 (MÜLLER^JÜRGEN, NÚÑEZ^JOSÉ, SØRENSEN^BJØRN, ...), ~15 % CJK in
ISO_IR 192 or GB18030 (Wang^Xiaoming=王^小明, 王^小明, Yamada^Taro=山田^太郎, Kim^Minjun=김^민준).
Study dates: uniform over 2017-01-01 .. 2024-12-31. Modalities: CT, MR, CR, DX, US, MG, PT(+CT),
XA, NM with realistic shares.
"""
import argparse
import datetime
import hashlib
import os
import random

STUDIES = 2
SERIES = 5
INSTANCES = 10
DATE0 = datetime.date(2017, 1, 1)
DATE1 = datetime.date(2024, 12, 31)

# --- names -------------------------------------------------------------------------------------
# (surname, weight per 100k) roughly after the US 2010 census top list.
US_SURNAMES = [
    ("SMITH", 828), ("JOHNSON", 655), ("WILLIAMS", 550), ("BROWN", 487), ("JONES", 483),
    ("GARCIA", 394), ("MILLER", 384), ("DAVIS", 377), ("RODRIGUEZ", 353), ("MARTINEZ", 350),
    ("HERNANDEZ", 340), ("LOPEZ", 294), ("GONZALEZ", 279), ("WILSON", 267), ("ANDERSON", 262),
    ("THOMAS", 252), ("TAYLOR", 251), ("MOORE", 241), ("JACKSON", 239), ("MARTIN", 239),
    ("LEE", 229), ("PEREZ", 223), ("THOMPSON", 223), ("WHITE", 222), ("HARRIS", 212),
    ("SANCHEZ", 208), ("CLARK", 190), ("RAMIREZ", 189), ("LEWIS", 181), ("ROBINSON", 179),
    ("WALKER", 177), ("YOUNG", 165), ("ALLEN", 164), ("KING", 161), ("WRIGHT", 160),
    ("SCOTT", 153), ("TORRES", 152), ("NGUYEN", 150), ("HILL", 149), ("FLORES", 148),
    ("GREEN", 147), ("ADAMS", 145), ("NELSON", 144), ("BAKER", 141), ("HALL", 137),
    ("RIVERA", 134), ("CAMPBELL", 132), ("MITCHELL", 131), ("CARTER", 128), ("ROBERTS", 127),
    ("GOMEZ", 125), ("PHILLIPS", 124), ("EVANS", 123), ("TURNER", 122), ("DIAZ", 120),
    ("PARKER", 119), ("CRUZ", 118), ("EDWARDS", 117), ("COLLINS", 116), ("REYES", 115),
    ("STEWART", 114), ("MORRIS", 112), ("MORALES", 111), ("MURPHY", 110), ("COOK", 109),
    ("ROGERS", 108), ("GUTIERREZ", 107), ("ORTIZ", 106), ("MORGAN", 105), ("COOPER", 104),
    ("PETERSON", 103), ("BAILEY", 102), ("REED", 101), ("KELLY", 100), ("HOWARD", 99),
    ("RAMOS", 98), ("KIM", 97), ("COX", 96), ("WARD", 95), ("RICHARDSON", 94), ("WATSON", 93),
    ("BROOKS", 92), ("CHAVEZ", 91), ("WOOD", 90), ("JAMES", 89), ("BENNETT", 88), ("GRAY", 87),
    ("MENDOZA", 86), ("RUIZ", 85), ("HUGHES", 84), ("PRICE", 83), ("ALVAREZ", 82),
    ("CASTILLO", 81), ("SANDERS", 80), ("PATEL", 79), ("MYERS", 78), ("LONG", 77), ("ROSS", 76),
    ("FOSTER", 75), ("JIMENEZ", 74), ("SMALL", 40), ("SMILEY", 12), ("SMITHERS", 6),
]
US_GIVEN_M = ["JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH",
              "THOMAS", "CHARLES", "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "DONALD",
              "STEVEN", "PAUL", "ANDREW", "JOSHUA", "KENNETH", "KEVIN", "BRIAN", "GEORGE",
              "TIMOTHY", "RONALD", "EDWARD", "JASON", "JEFFREY", "RYAN", "JACOB", "GARY"]
US_GIVEN_F = ["MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN",
              "JESSICA", "SARAH", "KAREN", "LISA", "NANCY", "BETTY", "MARGARET", "SANDRA",
              "ASHLEY", "KIMBERLY", "EMILY", "DONNA", "MICHELLE", "CAROL", "AMANDA", "DOROTHY",
              "MELISSA", "DEBORAH", "STEPHANIE", "REBECCA", "SHARON", "LAURA", "CYNTHIA"]
MIDDLE = ["A", "B", "C", "D", "E", "J", "L", "M", "R", "S", "T", ""]
# Synthetic tail: surname = onset + nucleus (+ coda): many rare names sharing 3-letter prefixes.
ONSETS = ["B", "BR", "C", "CH", "D", "F", "G", "GR", "H", "K", "L", "M", "N", "P", "R", "S",
          "ST", "T", "TR", "V", "W"]
NUCLEI = ["A", "E", "I", "O", "U", "AR", "ER", "OR", "AL", "EL", "AN", "EN", "ON", "IN"]
CODAS = ["DEN", "TON", "SON", "LEY", "FORD", "MAN", "WELL", "BY", "VILLE", "STEIN", "OWSKI",
         "INI", "ETTE", "ERS", "KINS", "WOOD", "FIELD", "BERG", "HAM", "LAND"]

EU_SURNAMES = [  # ISO_IR 100 (Latin-1), some with accents, some plain
    ("MÜLLER", 120), ("SCHMIDT", 100), ("SCHNEIDER", 60), ("FISCHER", 60), ("WEBER", 50),
    ("MEYER", 50), ("WAGNER", 45), ("BECKER", 40), ("SCHULZ", 40), ("HOFFMANN", 40),
    ("SCHÄFER", 35), ("KOCH", 30), ("BAUER", 30), ("RICHTER", 30), ("KLEIN", 30), ("WOLF", 25),
    ("SCHRÖDER", 25), ("NEUMANN", 25), ("SCHWARZ", 25), ("ZIMMERMANN", 25), ("BRAUN", 20),
    ("KRÜGER", 20), ("HOFMANN", 20), ("HARTMANN", 20), ("LANGE", 20), ("JÄGER", 15),
    ("KÖNIG", 15), ("KRÄMER", 12), ("BÖHM", 12), ("GROß", 10), ("WEIß", 10), ("MÖLLER", 12),
    ("LEFÈVRE", 15), ("FRANÇOIS", 12), ("MÉNARD", 10), ("GIRAUD", 10), ("BÉRANGER", 8),
    ("DUBOIS", 20), ("LAMBERT", 15), ("GARCÍA", 40), ("MARTÍNEZ", 30), ("GÓMEZ", 20),
    ("PÉREZ", 20), ("SÁNCHEZ", 20), ("NÚÑEZ", 15), ("MUÑOZ", 15), ("RODRÍGUEZ", 25),
    ("JØRGENSEN", 10), ("SØRENSEN", 10), ("ÅBERG", 6), ("ÖSTLUND", 6), ("LUNDQVIST", 6),
    ("D'ANGELO", 6), ("ROSSI", 20), ("RUSSO", 15), ("ESPOSITO", 10), ("CONCEIÇÃO", 8),
]
EU_GIVEN_M = ["JÜRGEN", "JÖRG", "KLAUS", "STEFAN", "MICHAEL", "THOMAS", "RENÉ", "JOSÉ",
              "FRANÇOIS", "JÉRÔME", "SØREN", "BJÖRN", "ANDRÉ", "LUCA", "JOÃO", "MATTHIAS"]
EU_GIVEN_F = ["ANNA", "PETRA", "SABINE", "HÉLÈNE", "FRANÇOISE", "MARÍA", "CÉLINE", "JOSÉPHINE",
              "BÄRBEL", "GRETE", "INGRID", "ÅSA", "CHIARA", "INÊS", "SIGRÚN", "URSULA"]

CN_SURNAMES = [  # (hanzi, pinyin, weight %)
    ("王", "WANG", 7.1), ("李", "LI", 7.0), ("张", "ZHANG", 6.8), ("刘", "LIU", 5.4),
    ("陈", "CHEN", 4.5), ("杨", "YANG", 3.1), ("黄", "HUANG", 2.2), ("赵", "ZHAO", 2.2),
    ("吴", "WU", 2.0), ("周", "ZHOU", 1.9), ("徐", "XU", 1.5), ("孙", "SUN", 1.5),
    ("马", "MA", 1.3), ("朱", "ZHU", 1.2), ("胡", "HU", 1.1), ("郭", "GUO", 1.1),
    ("何", "HE", 1.0), ("高", "GAO", 1.0), ("林", "LIN", 0.9), ("罗", "LUO", 0.9),
    ("郑", "ZHENG", 0.8), ("梁", "LIANG", 0.8), ("谢", "XIE", 0.7), ("宋", "SONG", 0.6),
]
CN_GIVEN = [("伟", "WEI"), ("芳", "FANG"), ("娜", "NA"), ("敏", "MIN"), ("静", "JING"),
            ("丽", "LI"), ("强", "QIANG"), ("磊", "LEI"), ("军", "JUN"), ("洋", "YANG"),
            ("勇", "YONG"), ("艳", "YAN"), ("杰", "JIE"), ("涛", "TAO"), ("明", "MING"),
            ("超", "CHAO"), ("秀", "XIU"), ("霞", "XIA"), ("平", "PING"), ("刚", "GANG"),
            ("英", "YING"), ("华", "HUA"), ("小", "XIAO"), ("建", "JIAN"), ("国", "GUO"),
            ("文", "WEN"), ("志", "ZHI"), ("海", "HAI"), ("政", "ZHENG"), ("达", "DA")]
JP_SURNAMES = [("佐藤", "SATO", 5), ("鈴木", "SUZUKI", 4), ("高橋", "TAKAHASHI", 3),
               ("田中", "TANAKA", 3), ("渡辺", "WATANABE", 3), ("伊藤", "ITO", 3),
               ("山本", "YAMAMOTO", 3), ("中村", "NAKAMURA", 3), ("小林", "KOBAYASHI", 2),
               ("山田", "YAMADA", 2)]
JP_GIVEN = [("太郎", "TARO"), ("花子", "HANAKO"), ("健", "KEN"), ("陽子", "YOKO"),
            ("翔太", "SHOTA"), ("美咲", "MISAKI"), ("大輔", "DAISUKE"), ("直美", "NAOMI")]
KR_SURNAMES = [("김", "KIM", 21), ("이", "LEE", 15), ("박", "PARK", 8), ("최", "CHOI", 5),
               ("정", "JUNG", 5), ("강", "KANG", 2), ("조", "CHO", 2), ("윤", "YOON", 2)]
KR_GIVEN = [("민준", "MINJUN"), ("서연", "SEOYEON"), ("지훈", "JIHOON"), ("수빈", "SUBIN"),
            ("현우", "HYUNWOO"), ("지은", "JIEUN")]

# --- studies -----------------------------------------------------------------------------------
# modality, weight, sop class uid, body parts, study descriptions, series descriptions
MODALITIES = [
    ("CT", 28, "1.2.840.10008.5.1.4.1.1.2", ["CHEST", "ABDOMEN", "HEAD", "PELVIS", "SPINE"],
     ["CT THORAX W/O CONTRAST", "CT ABDOMEN PELVIS WITH CONTRAST", "CT HEAD W/O CONTRAST",
      "CT ANGIO CHEST", "CT LUMBAR SPINE"],
     ["Topogram 0.6 T20s", "Axial 5.0 B30f", "Axial 1.0 B70f", "Coronal MPR 3.0", "Sagittal MPR 3.0"]),
    ("MR", 22, "1.2.840.10008.5.1.4.1.1.4", ["HEAD", "KNEE", "SPINE", "SHOULDER", "PROSTATE"],
     ["MR BRAIN W/WO CONTRAST", "MR KNEE LEFT", "MR LUMBAR SPINE", "MR SHOULDER RIGHT",
      "MR PROSTATE MULTIPARAMETRIC"],
     ["localizer", "t1_tse_sag", "t2_tse_ax", "t2_flair_tra", "ep2d_diff_tra"]),
    ("CR", 10, "1.2.840.10008.5.1.4.1.1.1", ["CHEST", "HAND", "FOOT", "SKULL"],
     ["XR CHEST 2 VIEWS", "XR HAND 3 VIEWS", "XR FOOT", "XR SKULL"],
     ["PA", "LAT", "OBLIQUE", "AP", "ADDITIONAL"]),
    ("DX", 10, "1.2.840.10008.5.1.4.1.1.1.1", ["CHEST", "KNEE", "HIP", "ANKLE"],
     ["DX CHEST PA", "DX KNEE BILATERAL STANDING", "DX HIP AP", "DX ANKLE"],
     ["AP", "LAT", "PA", "OBLIQUE", "STANDING"]),
    ("US", 12, "1.2.840.10008.5.1.4.1.1.6.1", ["ABDOMEN", "THYROID", "KIDNEY", "BREAST"],
     ["US ABDOMEN COMPLETE", "US THYROID", "US RENAL", "US BREAST LEFT"],
     ["Liver", "Gallbladder", "Kidneys", "Spleen", "Doppler"]),
    ("MG", 6, "1.2.840.10008.5.1.4.1.1.1.2", ["BREAST"],
     ["MG SCREENING BILATERAL", "MG DIAGNOSTIC LEFT"],
     ["R CC", "L CC", "R MLO", "L MLO", "ADDITIONAL"]),
    ("PT", 5, "1.2.840.10008.5.1.4.1.1.128", ["WHOLEBODY"],
     ["PET/CT FDG WHOLE BODY", "PET/CT PSMA"],
     ["PET WB AC", "PET WB NAC", "CT AC", "CT WB 3.0", "MIP"]),
    ("XA", 4, "1.2.840.10008.5.1.4.1.1.12.1", ["HEART", "LEG"],
     ["CORONARY ANGIOGRAPHY", "PERIPHERAL ANGIOGRAPHY"],
     ["LAO 30", "RAO 30", "LAO 45 CRAN 20", "AP", "RUN 5"]),
    ("NM", 3, "1.2.840.10008.5.1.4.1.1.20", ["WHOLEBODY", "THYROID"],
     ["NM BONE SCAN WHOLE BODY", "NM THYROID SCAN"],
     ["ANT", "POST", "SPOT 1", "SPOT 2", "SPECT"]),
]
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
REFERRING = ["HOUSE^GREGORY^^DR", "GREY^MEREDITH", "KILDARE^JAMES^^DR", "QUINN^MICHAELA^^DR",
             "ROSS^DOUG", "WELBY^MARCUS^^DR", "SHEPHERD^DEREK", "CARTER^JOHN^^DR",
             "WEBER^ANNA^^DR.MED.", "LEFEVRE^HELENE", "", "", "CHEN^WEI^^DR"]


def uid_from(text: str) -> str:
    """2.25 UID (PS3.5 B.2) from a hash: random-looking, deterministic."""
    return "2.25." + str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))


def instance_uid(series_uid: str, n: int) -> str:
    return uid_from(f"{series_uid}/{n}")


def weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for v, w in pairs:
        x -= w
        if x < 0:
            return v
    return pairs[-1][0]


def cap(s):
    return s[:1] + s[1:].lower()


def make_name(rng):
    """(name, charset, sex)"""
    sex = rng.choice("MF")
    r = rng.random()
    if r < 0.70:
        if rng.random() < 0.25:  # the top ~100 US surnames cover ~22 % of the population
            fam = weighted(rng, US_SURNAMES)
        else:  # long tail
            fam = rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)
        given = rng.choice(US_GIVEN_M if sex == "M" else US_GIVEN_F)
        mid = rng.choice(MIDDLE)
        name = f"{fam}^{given}" + (f"^{mid}" if mid else "")
        if rng.random() < 0.25:  # some sites store mixed case
            name = "^".join(cap(p) for p in name.split("^"))
        return name, "", sex
    if r < 0.85:
        fam = weighted(rng, EU_SURNAMES)
        given = rng.choice(EU_GIVEN_M if sex == "M" else EU_GIVEN_F)
        name = f"{fam}^{given}"
        if rng.random() < 0.25:
            name = f"{cap(fam)}^{cap(given)}"
        return name, "ISO_IR 100", sex
    r2 = rng.random()
    if r2 < 0.65:  # Chinese
        fam_h, fam_p = weighted(rng, [((h, p), w) for h, p, w in CN_SURNAMES])
        g = [rng.choice(CN_GIVEN) for _ in range(rng.choice((1, 2, 2)))]
        gh = "".join(h for h, _ in g)
        gp = "".join(p for _, p in g)
        form = rng.random()
        if form < 0.5:
            return f"{fam_p}^{gp}={fam_h}^{gh}", "ISO_IR 192", sex
        if form < 0.75:
            return f"{fam_h}^{gh}", "GB18030", sex
        return f"{fam_h}^{gh}", "ISO_IR 192", sex
    if r2 < 0.85:  # Japanese (UTF-8: MIFAS's ISO 2022 limitation is not exercised)
        fam_h, fam_p = weighted(rng, [((h, p), w) for h, p, w in JP_SURNAMES])
        gh, gp = rng.choice(JP_GIVEN)
        return f"{fam_p}^{gp}={fam_h}^{gh}", "ISO_IR 192", sex
    fam_h, fam_p = weighted(rng, [((h, p), w) for h, p, w in KR_SURNAMES])
    gh, gp = rng.choice(KR_GIVEN)
    return f"{fam_p}^{gp}={fam_h}^{gh}", "ISO_IR 192", sex


def patient_id(i: int) -> str:
    # a bijection of 0..89,999,999 (48271 is coprime with it): unique, random-looking 8-digit MRNs
    return str((i * 48271 + 1234567) % 89_999_999 + 10_000_000)


def accession(k: int, year: int) -> str:
    return f"R{year % 100:02d}{(k * 69621 + 777) % 9_999_991:07d}"


def generate(n_patients: int, seed: int):
    patients, studies, series = [], [], []
    span = (DATE1 - DATE0).days
    mods = [(m, m[1]) for m in MODALITIES]
    for i in range(n_patients):
        rng = random.Random(f"{seed}:{i}")
        name, cs, sex = make_name(rng)
        birth = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randrange(0, 31000))
        pid = patient_id(i)
        patients.append((i, pid, name, cs, birth.strftime("%Y%m%d"), sex))
        for s in range(STUDIES):
            k = i * STUDIES + s
            mod = weighted(rng, mods)
            modality, _, sop, parts, sdescs, serdescs = mod
            date = DATE0 + datetime.timedelta(days=rng.randrange(0, span + 1))
            time = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
            study_uid = uid_from(f"{seed}/study/{k}")
            d = rng.randrange(len(sdescs))
            studies.append((study_uid, i, date.strftime("%Y%m%d"), time,
                            accession(k, date.year), sdescs[d], rng.choice(REFERRING),
                            str(1000 + k % 9000)))
            body = parts[d % len(parts)]
            for j in range(SERIES):
                ser_uid = uid_from(f"{seed}/series/{k}/{j}")
                m, sc = modality, sop
                if modality == "PT" and j in (2, 3):  # PET/CT: CT series inside a PT study
                    m, sc = "CT", CT_SOP
                series.append((ser_uid, study_uid, m, str(j + 1), serdescs[j], body, sc))
    return patients, studies, series


def write(out, patients, studies, series):
    os.makedirs(out, exist_ok=True)
    def dump(name, header, rows):
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\t".join(header) + "\n")
            for r in rows:
                f.write("\t".join(str(x) for x in r) + "\n")
        os.replace(tmp, os.path.join(out, name))
    dump("patients.tsv", ["idx", "patient_id", "name", "charset", "birth_date", "sex"], patients)
    dump("studies.tsv", ["study_uid", "patient_idx", "date", "time", "accession", "description",
                         "referring", "study_id"], studies)
    dump("series.tsv", ["series_uid", "study_uid", "modality", "number", "description",
                        "body_part", "sop_class"], series)


def load(out):
    """Catalog as dicts (for the driver and the file generator)."""
    def rows(name):
        with open(os.path.join(out, name), encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            return [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f]
    patients = rows("patients.tsv")
    studies = rows("studies.tsv")
    series = rows("series.tsv")
    for p in patients:
        p["idx"] = int(p["idx"])
    for s in studies:
        s["patient_idx"] = int(s["patient_idx"])
    return patients, studies, series


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--patients", type=int, required=True)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    p, st, se = generate(a.patients, a.seed)
    assert len({x[1] for x in p}) == len(p), "duplicate PatientID"
    assert len({x[4] for x in st}) == len(st), "duplicate AccessionNumber"
    write(a.out, p, st, se)
    print(f"catalog {a.out}: {len(p)} patients, {len(st)} studies, {len(se)} series, "
          f"{len(se) * INSTANCES} instances")


if __name__ == "__main__":
    main()
