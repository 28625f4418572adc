#!/usr/bin/env python3
"""Generate the sample input files for paygate.

Run from anywhere:

    python3 samples/make_samples.py

Writes into samples/ (next to this script) and tests/data/*/input.*
(.xlsx, .xls, .ods).
Needs Python 3, openpyxl, xlwt (for the .xls) and msoffcrypto-tool >= 5
(for the encrypted .xlsx):

    pip install openpyxl xlwt msoffcrypto-tool

Output is deterministic: every file uses its own fixed random seed, and the
.xlsx/.ods files are (re-)packed with fixed zip timestamps and fixed document
properties (created/modified 2026-11-01), so re-running gives byte-identical
files (for a given openpyxl/xlwt version). The one exception is
tests/data/xlsx_encrypted/input.xlsx: encryption uses random salts, so it is
only written when it does not exist yet (delete it to regenerate).

No sample carries an execution date: the gateway fills in the next business
day itself. The only dates are in tests/data/xlsx_title_rows_dates, which
exercises date-cell parsing.
"""

import csv
import datetime as dt
import io
import math
import os
import random
import re
import zipfile
from decimal import ROUND_HALF_UP, Decimal

from openpyxl import Workbook

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SAMPLES = HERE
TESTDATA = os.path.join(REPO, "tests", "data")

FIXED_TIME = dt.datetime(2026, 11, 1, 0, 0, 0)
CENT = Decimal("0.01")


def rng(name):
    """A separate, fixed-seed RNG per output file, so editing one generator
    does not change the others."""
    return random.Random("paygate-samples-2026-11/" + name)


# ---------------------------------------------------------------------------
# Check-digit helpers
# ---------------------------------------------------------------------------

def luhn_ok(digits):
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(body):
    """Append the Luhn check digit to `body`."""
    for c in "0123456789":
        if luhn_ok(body + c):
            return body + c
    raise AssertionError("unreachable")


def iban_check_digits(country, bban):
    """ISO 13616 / ISO 7064 mod 97-10 check digits."""
    rearranged = bban + country + "00"
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return "%02d" % (98 - int(numeric) % 97)


def make_iban(country, bban):
    return country + iban_check_digits(country, bban) + bban


def iban_ok(iban):
    s = iban.replace(" ", "")
    numeric = "".join(str(int(ch, 36)) for ch in s[4:] + s[:4])
    return int(numeric) % 97 == 1


def group4(iban):
    """Paper format: groups of four separated by spaces."""
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def digits(r, n):
    return "".join(r.choice("0123456789") for _ in range(n))


# --- national BBAN builders (with national check digits where they exist) ---

def bban_de(r, blz):
    return blz + digits(r, 10)


def bban_fr(r, bank, branch):
    account = digits(r, 11)
    key = 97 - ((89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97)
    return bank + branch + account + "%02d" % key


def bban_nl(r, bank):
    # Old Dutch "elfproef": weighted digit sum divisible by 11.
    while True:
        account = digits(r, 10)
        if account[0] == "0":
            continue
        if sum(int(d) * (10 - i) for i, d in enumerate(account)) % 11 == 0:
            return bank + account


def _es_dc(ten_digits):
    weights = [1, 2, 4, 8, 5, 10, 9, 7, 3, 6]
    d = 11 - sum(int(c) * w for c, w in zip(ten_digits, weights)) % 11
    return {11: 0, 10: 1}.get(d, d)


def bban_es(r, bank, branch):
    account = digits(r, 10)
    dc = "%d%d" % (_es_dc("00" + bank + branch), _es_dc(account))
    return bank + branch + dc + account


_IT_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12,
           14, 16, 10, 22, 25, 24, 23]


def bban_it(r, abi, cab):
    account = "0000" + digits(r, 8)
    s = abi + cab + account
    total = 0
    for i, ch in enumerate(s):
        v = int(ch, 36) if ch.isdigit() else ord(ch) - ord("A")
        total += _IT_ODD[v] if i % 2 == 0 else v
    cin = chr(ord("A") + total % 26)
    return cin + s


def bban_be(r, bank):
    first10 = bank + digits(r, 7)
    check = int(first10) % 97 or 97
    return first10 + "%02d" % check


def bban_at(r, blz):
    return blz + "00" + digits(r, 9)


def bban_gb(r, bank, sort_prefix):
    return bank + sort_prefix + digits(r, 4) + digits(r, 8)


def bban_ch(r, iid):
    return iid + "0000" + digits(r, 8)


# (country, BIC, bban-builder) — BIC matches the bank in the BBAN.
EU_BANKS = {
    "DE": [("DEUTDEFF", lambda r: bban_de(r, "50070010")),       # Deutsche Bank Frankfurt
           ("COBADEFFXXX", lambda r: bban_de(r, "50040000")),    # Commerzbank Frankfurt
           ("HYVEDEMMXXX", lambda r: bban_de(r, "70020270"))],   # HypoVereinsbank Muenchen
    "FR": [("BNPAFRPP", lambda r: bban_fr(r, "30004", "00828")),
           ("SOGEFRPP", lambda r: bban_fr(r, "30003", "03620")),
           ("AGRIFRPP", lambda r: bban_fr(r, "30006", "00001"))],
    "NL": [("INGBNL2A", lambda r: bban_nl(r, "INGB")),
           ("ABNANL2A", lambda r: bban_nl(r, "ABNA")),
           ("RABONL2U", lambda r: bban_nl(r, "RABO"))],
    "ES": [("CAIXESBB", lambda r: bban_es(r, "2100", "0418")),
           ("BSCHESMM", lambda r: bban_es(r, "0049", "1500")),
           ("BBVAESMM", lambda r: bban_es(r, "0182", "2370"))],
    "IT": [("UNCRITMM", lambda r: bban_it(r, "02008", "01600")),
           ("BCITITMM", lambda r: bban_it(r, "03069", "09400"))],
    "BE": [("GEBABEBB", lambda r: bban_be(r, "001")),
           ("KREDBEBB", lambda r: bban_be(r, "734")),
           ("BBRUBEBB", lambda r: bban_be(r, "310"))],
    "AT": [("BKAUATWW", lambda r: bban_at(r, "12000")),
           ("GIBAATWW", lambda r: bban_at(r, "20111")),
           ("RZBAATWW", lambda r: bban_at(r, "31000"))],
    "GB": [("BARCGB22", lambda r: bban_gb(r, "BARC", "20")),
           ("NWBKGB2L", lambda r: bban_gb(r, "NWBK", "60")),
           ("HBUKGB4B", lambda r: bban_gb(r, "HBUK", "40"))],
    "CH": [("UBSWCHZH80A", lambda r: bban_ch(r, "00235")),
           ("ZKBKCHZZ80A", lambda r: bban_ch(r, "00700")),
           ("POFICHBEXXX", lambda r: bban_ch(r, "09000"))],
}
IBAN_LENGTH = {"DE": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "BE": 16,
               "AT": 20, "GB": 22, "CH": 21}


def eu_account(r, country, bank_index=None):
    banks = EU_BANKS[country]
    bic, builder = banks[bank_index] if bank_index is not None else r.choice(banks)
    iban = make_iban(country, builder(r))
    assert len(iban) == IBAN_LENGTH[country] and iban_ok(iban), iban
    return iban, bic


# ---------------------------------------------------------------------------
# Chinese payroll data
# ---------------------------------------------------------------------------

# CNAPS bank code -> (bank name, UnionPay debit-card BIN, card length)
CN_BANKS = {
    "102": ("中国工商银行", [("622202", 19), ("621226", 19)]),
    "103": ("中国农业银行", [("622848", 19), ("622845", 19)]),
    "104": ("中国银行", [("621661", 19), ("621785", 19)]),
    "105": ("中国建设银行", [("621700", 19), ("622700", 19)]),
    "301": ("交通银行", [("622262", 19), ("622260", 19)]),
    "308": ("招商银行", [("622588", 16), ("621483", 16)]),
}
CN_BANK_WEIGHTS = {"102": 6, "103": 3, "104": 3, "105": 5, "301": 2, "308": 4}

# CNAPS city code -> (city, districts with branches)
CN_CITIES = {
    "2900": ("上海", ["浦东", "徐汇", "静安", "长宁", "闵行", "杨浦"]),
    "1000": ("北京", ["海淀", "朝阳", "西城", "东城", "丰台"]),
    "5840": ("深圳", ["福田", "南山", "罗湖", "宝安"]),
    "5810": ("广州", ["天河", "越秀", "海珠"]),
    "3310": ("杭州", ["西湖", "滨江", "拱墅"]),
    "3010": ("南京", ["鼓楼", "玄武", "建邺"]),
}
CN_CITY_WEIGHTS = {"2900": 12, "1000": 3, "5840": 2, "5810": 1, "3310": 2, "3010": 1}

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹"
                "彭曾肖田董潘袁蔡蒋余杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石"
                "金贾夏韦方邹熊白孟秦邱侯江尹薛段雷龙黎史陶贺毛郝顾龚邵万钱戴"
                "严孔向常汤康易乔赖")
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳",
         "杰", "娟", "涛", "明", "超", "秀英", "霞", "平", "刚", "桂英", "建华",
         "志强", "晓东", "海燕", "子涵", "浩然", "雨桐", "欣怡", "思远", "文博",
         "佳琪", "宇轩", "梓萱", "一鸣", "晨曦", "嘉怡", "俊杰", "丹", "鹏", "华",
         "红", "玉兰", "婷", "斌", "宁", "凯", "琳", "颖", "慧敏", "国庆", "春梅"]
CLASSIC_NAMES = ["张伟", "王芳", "李娜", "刘洋"]


class ChinesePeople:
    """Hands out unique names and consistent branch codes across both
    payroll files (the GBK file gets different people)."""

    def __init__(self, r):
        self.r = r
        self.used_names = set()
        self.used_cards = set()
        self.branch_codes = {}  # branch name -> 12-digit CNAPS code
        self.pending_classic = list(CLASSIC_NAMES)

    def name(self):
        if self.pending_classic:
            n = self.pending_classic.pop(0)
        else:
            while True:
                n = self.r.choice(SURNAMES) + self.r.choice(GIVEN)
                if n not in self.used_names:
                    break
        self.used_names.add(n)
        return n

    def card(self, bank):
        while True:
            bin_, length = self.r.choice(CN_BANKS[bank][1])
            c = luhn_complete(bin_ + digits(self.r, length - len(bin_) - 1))
            if c not in self.used_cards:
                self.used_cards.add(c)
                return c

    def branch(self, bank, city):
        bank_name = CN_BANKS[bank][0]
        city_name, districts = CN_CITIES[city]
        if self.r.random() < 0.3:
            branch = "%s%s市分行营业部" % (bank_name, city_name)
        else:
            branch = "%s%s%s支行" % (bank_name, city_name, self.r.choice(districts))
        if branch not in self.branch_codes:
            while True:
                code = bank + city + digits(self.r, 5)
                if code not in self.branch_codes.values():
                    break
            self.branch_codes[branch] = code
        return self.branch_codes[branch], branch

    def person(self):
        r = self.r
        bank = r.choices(list(CN_BANK_WEIGHTS), list(CN_BANK_WEIGHTS.values()))[0]
        city = r.choices(list(CN_CITY_WEIGHTS), list(CN_CITY_WEIGHTS.values()))[0]
        code, branch = self.branch(bank, city)
        return {"name": self.name(), "account": self.card(bank),
                "bank_code": code, "bank_name": branch, "amount": salary(r)}


def salary(r):
    """Net pay 6,000.00 .. 48,000.00; about a third are whole yuan."""
    cents = r.randint(600000, 4800000)
    if r.random() < 0.35:
        cents -= cents % 100
    return Decimal(cents) / 100


def validate_cn(rows):
    for p in rows:
        a = p["account"]
        assert a.startswith("62") and len(a) in (16, 19) and luhn_ok(a), a
        assert len(p["bank_code"]) == 12 and p["bank_code"].isdigit()
        assert Decimal("6000") <= p["amount"] <= Decimal("48000")
        p["name"].encode("gbk")
        p["bank_name"].encode("gbk")


# ---------------------------------------------------------------------------
# Deterministic xlsx saving
# ---------------------------------------------------------------------------

def new_workbook():
    wb = Workbook()
    wb.properties.creator = "paygate samples"
    wb.properties.lastModifiedBy = "paygate samples"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    return wb


def save_xlsx(wb, path, patches=None):
    """Save, then re-pack the zip with fixed timestamps. openpyxl always
    stamps dcterms:modified with the current time on save, so that is
    rewritten too.

    `path` may also be a writable binary file object. `patches` maps a zip
    entry name to a function bytes -> bytes applied to that entry (used to
    put in XML that openpyxl cannot write); all other entries are copied
    unchanged."""
    patches = patches or {}
    buf = io.BytesIO()
    wb.save(buf)
    buf.seek(0)
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    if isinstance(path, str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(buf) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)",
                              rb"\g<1>" + stamp + rb"\g<2>", data)
            if info.filename in patches:
                data = patches[info.filename](data)
            out = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            out.compress_type = zipfile.ZIP_DEFLATED
            out.external_attr = 0o644 << 16
            dst.writestr(out, data)


def text_cell(ws, row, col, value):
    c = ws.cell(row=row, column=col, value=str(value))
    c.number_format = "@"
    return c


def money_cell(ws, row, col, value):
    c = ws.cell(row=row, column=col, value=float(value))
    c.number_format = "#,##0.00"
    return c


def set_widths(ws, widths):
    for letter, w in zip("ABCDEFGHIJ", widths):
        ws.column_dimensions[letter].width = w


# ---------------------------------------------------------------------------
# 1. payroll.csv + payroll.xlsx (same 40 rows)
# ---------------------------------------------------------------------------

PAYROLL_HEADER = ["Employee ID", "Name", "Account", "Bank Code", "Bank Name",
                  "Net Pay", "Currency", "Reference"]
PAYROLL_TITLE = "Acme (Shanghai) Trading Co., Ltd. — Payroll November 2026"


def payroll_people():
    people = ChinesePeople(rng("payroll"))
    rows = [people.person() for _ in range(40)]
    for i, p in enumerate(rows, 1):
        p["employee_id"] = "E%04d" % i
    return people, rows


def write_payroll_csv(rows):
    path = os.path.join(SAMPLES, "payroll.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PAYROLL_HEADER)
        for p in rows:
            w.writerow([p["employee_id"], p["name"], p["account"], p["bank_code"],
                        p["bank_name"], "%.2f" % p["amount"], "CNY", "Salary 2026-11"])
    return path


def write_payroll_xlsx(rows):
    path = os.path.join(SAMPLES, "payroll.xlsx")
    wb = new_workbook()
    ws = wb.active
    ws.title = "Payroll"
    ws["A1"] = PAYROLL_TITLE
    for col, h in enumerate(PAYROLL_HEADER, 1):
        ws.cell(row=3, column=col, value=h)
    for i, p in enumerate(rows):
        r = 4 + i
        text_cell(ws, r, 1, p["employee_id"])
        ws.cell(row=r, column=2, value=p["name"])
        text_cell(ws, r, 3, p["account"])
        text_cell(ws, r, 4, p["bank_code"])
        ws.cell(row=r, column=5, value=p["bank_name"])
        money_cell(ws, r, 6, p["amount"])
        ws.cell(row=r, column=7, value="CNY")
        ws.cell(row=r, column=8, value="Salary 2026-11")
    set_widths(ws, [12, 10, 22, 15, 34, 12, 9, 16])
    notes = wb.create_sheet("Notes")
    notes["A1"] = ("Net pay after tax and social insurance; approved by Finance. "
                   "Payments are in sheet 'Payroll'.")
    save_xlsx(wb, path)
    return path


# ---------------------------------------------------------------------------
# 2. payroll-gbk.csv (Chinese-Windows Excel export, GBK, CRLF, title+trailer)
# ---------------------------------------------------------------------------

def write_payroll_gbk(people):
    path = os.path.join(SAMPLES, "payroll-gbk.csv")
    people.r = rng("payroll-gbk")  # different people, same uniqueness pool
    rows = [people.person() for _ in range(35)]
    validate_cn(rows)
    total = sum((p["amount"] for p in rows), Decimal("0")).quantize(CENT)
    with open(path, "w", encoding="gbk", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["代发工资清单 2026年11月", "", "", "", "", ""])
        w.writerow(["序号", "姓名", "收款账号", "开户行", "联行号", "实发金额", "币种", "用途"])
        for i, p in enumerate(rows, 1):
            w.writerow([i, p["name"], p["account"], p["bank_name"], p["bank_code"],
                        "%.2f" % p["amount"], "CNY", "11月工资"])
        w.writerow(["合计", "", "", "", "", "%.2f" % total, "", ""])
    return path, len(rows), total


# ---------------------------------------------------------------------------
# 3. supplier.csv (European ERP export, UTF-8 BOM, semicolons)
# ---------------------------------------------------------------------------

SUPPLIER_HEADER = ["Vendor ID", "Beneficiary", "IBAN", "BIC", "Amount", "Currency",
                   "Remittance Information", "End to End ID"]

# (country, beneficiary, currency). Names avoid '&' (outside the SEPA basic
# Latin set); a few carry umlauts/accents that transliterate cleanly.
SUPPLIERS = [
    ("DE", "Müller Logistik GmbH", "EUR"),
    ("FR", "Société Générale Fournitures SARL", "EUR"),
    ("NL", "Van Dijk Handelsonderneming B.V.", "EUR"),
    ("ES", "Distribuciones García S.L.", "EUR"),
    ("IT", "Rossi Meccanica S.r.l.", "EUR"),
    ("BE", "Janssens Industrie NV", "EUR"),
    ("AT", "Gruber Holztechnik GmbH", "EUR"),
    ("GB", "Thompson Engineering Ltd", "GBP"),
    ("CH", "Keller Präzisionstechnik AG", "CHF"),
    ("DE", "Schneider Maschinenbau AG", "USD"),
    ("FR", "Dubois Emballages SAS", "EUR"),
    ("NL", "De Vries Installatietechniek B.V.", "JPY"),
    ("ES", "Martinez Componentes S.A.", "EUR"),
    ("IT", "Bianchi Forniture S.p.A.", "USD"),
    ("BE", "Peeters Transport SA", "EUR"),
    ("AT", "Huber Stahlbau GmbH", "EUR"),
    ("GB", "Harrison Clarke Supplies Ltd", "GBP"),
    ("CH", "Brunner Software GmbH", "CHF"),
    ("DE", "Becker Verpackungen GmbH", "EUR"),
    ("FR", "Lefèvre Transports SA", "EUR"),
    ("NL", "Bakker Logistics B.V.", "USD"),
    ("ES", "Suministros Industriales Iberica S.L.", "EUR"),
    ("IT", "Ferrari Imballaggi S.r.l.", "EUR"),
    ("BE", "Maes Logistics BV", "EUR"),
    ("AT", "Wagner Kunststoffe GmbH", "EUR"),
    ("GB", "Whitfield Packaging plc", "EUR"),
    ("CH", "Schmid Automation SA", "EUR"),
    ("DE", "Hoffmann Elektrotechnik GmbH", "JPY"),
    ("FR", "Moreau Industrie SAS", "EUR"),
    ("IT", "Colombo Tessuti S.p.A.", "EUR"),
]
SPACED_IBAN_ROWS = {1, 9, 16}  # 0-based rows written in paper format


def supplier_amount(r, currency):
    if currency == "JPY":
        return str(r.randrange(150000, 3000000, 500))
    # log-uniform 120.00 .. 250,000.00, a quarter of them whole amounts
    value = math.exp(r.uniform(math.log(120), math.log(250000)))
    amount = Decimal(value).quantize(CENT, ROUND_HALF_UP)
    if r.random() < 0.25:
        amount = amount.quantize(Decimal("1"))
    amount = min(max(amount, Decimal("120.00")), Decimal("250000.00"))
    return "%.2f" % amount


def write_supplier():
    path = os.path.join(SAMPLES, "supplier.csv")
    r = rng("supplier")
    vendor_ids = r.sample(range(10010, 10999), len(SUPPLIERS))
    invoices = r.sample(range(10000, 11999), len(SUPPLIERS))
    rows = []
    for i, (country, name, currency) in enumerate(SUPPLIERS):
        iban, bic = eu_account(r, country)
        if i in SPACED_IBAN_ROWS:
            iban = group4(iban)
        remit = "INV-2026-%05d / PO %d" % (invoices[i], r.randint(7000, 8999))
        rows.append(["V%05d" % vendor_ids[i], name, iban, bic,
                     supplier_amount(r, currency), currency, remit,
                     "SUP-20261130-%04d" % (i + 1)])
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\r\n")
        w.writerow(SUPPLIER_HEADER)
        w.writerows(rows)
    return path, len(rows)


# ---------------------------------------------------------------------------
# 4. broken.csv (one problem per row, for the error report)
# ---------------------------------------------------------------------------

def write_broken():
    path = os.path.join(SAMPLES, "broken.csv")
    r = rng("broken")

    def acct(country, bank_index=0):
        return eu_account(r, country, bank_index)

    # IBAN with a wrong check digit: flip the 2nd check digit.
    fr_iban, fr_bic = acct("FR")
    bad_check = fr_iban[:3] + str((int(fr_iban[3]) + 5) % 10) + fr_iban[4:]
    assert not iban_ok(bad_check)
    # IBAN with a wrong length for NL (11-digit account -> 19 chars) but a
    # correct mod-97 checksum, so only the length is wrong.
    nl_long = make_iban("NL", "INGB" + "06" + digits(r, 9))
    assert len(nl_long) == 19 and iban_ok(nl_long)

    de1, de1_bic = acct("DE", 1)
    de_db, _ = acct("DE", 0)
    it1, it1_bic = acct("IT")

    rows = [
        # 1 valid
        ["V20001", "Hartmann Buerobedarf GmbH", de1, de1_bic, "1840.00", "EUR",
         "INV-2026-20117 / PO 8102"],
        # 2 IBAN wrong check digit
        ["V20002", "Girard Equipements SAS", bad_check, fr_bic, "2375.40", "EUR",
         "INV-2026-20118 / PO 8103"],
        # 3 IBAN wrong length for its country
        ["V20003", "Jansen Techniek B.V.", nl_long, "INGBNL2A", "980.00", "EUR",
         "INV-2026-20119 / PO 8104"],
        # 4 malformed BIC
        ["V20004", "Wolf Antriebstechnik GmbH", de_db, "DEUT1234", "5120.75", "EUR",
         "INV-2026-20120 / PO 8105"],
        # 5 negative amount
        ["V20005", "Lopez Ferreteria S.L.", acct("ES")[0], acct_bic("ES"), "-50.00", "EUR",
         "INV-2026-20121 / PO 8106"],
        # 6 too many decimals for EUR
        ["V20006", "Conti Utensili S.r.l.", acct("IT", 1)[0], acct_bic("IT", 1), "12.345", "EUR",
         "INV-2026-20122 / PO 8107"],
        # 7 not a number
        ["V20007", "Dubois Nettoyage SARL", acct("FR", 1)[0], acct_bic("FR", 1), "abc", "EUR",
         "INV-2026-20123 / PO 8108"],
        # 8 JPY with decimals
        ["V20008", "Van Leeuwen Trading B.V.", acct("NL", 1)[0], acct_bic("NL", 1), "1000.50", "JPY",
         "INV-2026-20124 / PO 8109"],
        # 9 unknown currency
        ["V20009", "Steiner Metallbau GmbH", acct("AT")[0], acct_bic("AT"), "640.00", "XYZ",
         "INV-2026-20125 / PO 8110"],
        # 10 empty beneficiary
        ["V20010", "", acct("BE")[0], acct_bic("BE"), "1210.00", "EUR",
         "INV-2026-20126 / PO 8111"],
        # 11 name outside the SEPA Latin set, cannot be transliterated
        ["V20011", "北京贸易有限公司", acct("DE", 2)[0], acct_bic("DE", 2), "8800.00", "EUR",
         "INV-2026-20127 / PO 8112"],
        # 12 valid (original of the duplicate below)
        ["V20012", "Rossi Meccanica S.r.l.", it1, it1_bic, "3200.00", "EUR",
         "INV-2026-20128 / PO 8113"],
        # 13 duplicate payment: same as row 12, different End to End ID
        ["V20012", "Rossi Meccanica S.r.l.", it1, it1_bic, "3200.00", "EUR",
         "INV-2026-20128 / PO 8113"],
        # 14 reuses the End to End ID of row 1 (see below)
        ["V20014", "Baker Tools Ltd", acct("GB")[0], acct_bic("GB"), "455.20", "GBP",
         "INV-2026-20130 / PO 8115"],
        # 15 account already damaged by Excel (scientific notation)
        ["V20015", "Shanghai Precision Parts Co Ltd", "6.22848E+18", "ABOCCNBJ", "15600.00", "CNY",
         "INV-2026-20131 / PO 8116"],
        # 16 valid
        ["V20016", "Pichler Elektro GmbH", acct("AT", 1)[0], acct_bic("AT", 1), "2760.90", "EUR",
         "INV-2026-20132 / PO 8117"],
    ]
    for i, row in enumerate(rows, 1):
        row.append("BRK-20261130-%04d" % i)
    rows[13][-1] = rows[0][-1]  # row 14 reuses row 1's End to End ID

    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SUPPLIER_HEADER)
        w.writerows(rows)
    return path, len(rows)


def acct_bic(country, bank_index=0):
    return EU_BANKS[country][bank_index][0]


# ---------------------------------------------------------------------------
# 5. golden-test inputs (tests/data/*/input.xlsx)
# ---------------------------------------------------------------------------

TEST_HEADER = ["Name", "Account", "Bank Code", "Amount", "Currency"]


def excel_float(account):
    """What Excel keeps of a long number typed into a General cell:
    15 significant digits, stored as a double (shown as 6.22848E+18)."""
    return float("%.14e" % int(account))


def write_test_numeric_account():
    path = os.path.join(TESTDATA, "xlsx_numeric_account", "input.xlsx")
    rows = [  # (name, account, account stored as number?, bank code, amount)
        ("张伟", "6222021001123456789", False, "102290000123", Decimal("12500.00")),
        ("王芳", "6228480402564890018", True, "103100000456", Decimal("9870.50")),
        ("李娜", "6217002900135724683", True, "105584000789", Decimal("15230.25")),
    ]
    wb = new_workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(TEST_HEADER)
    for i, (name, account, numeric, code, amount) in enumerate(rows):
        assert len(account) == 19 and luhn_ok(account)
        r = 2 + i
        ws.cell(row=r, column=1, value=name)
        if numeric:
            ws.cell(row=r, column=2, value=excel_float(account))  # General format
        else:
            text_cell(ws, r, 2, account)
        text_cell(ws, r, 3, code)
        money_cell(ws, r, 4, amount)
        ws.cell(row=r, column=5, value="CNY")
    save_xlsx(wb, path)
    return path


def write_test_title_rows_dates():
    path = os.path.join(TESTDATA, "xlsx_title_rows_dates", "input.xlsx")
    rows = [
        ("刘洋", "6222022901314159267", "102290000123", Decimal("8600.00"), dt.date(2026, 12, 15)),
        ("陈静", "6216611002271828181", "104100000321", Decimal("11250.75"), dt.date(2026, 12, 16)),
        ("杨磊", "6212261003091827363", "102584000555", Decimal("7420.30"), "2026-12-17"),
        ("赵敏", "6228480216773409158", "103290000888", Decimal("13000.00"), "2026/12/18"),
    ]
    wb = new_workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws["A1"] = "Payroll December 2026"
    ws["A2"] = "Prepared by HR"
    for col, h in enumerate(TEST_HEADER + ["Payment Date"], 1):
        ws.cell(row=4, column=col, value=h)
    for i, (name, account, code, amount, when) in enumerate(rows):
        assert luhn_ok(account)
        r = 5 + i
        ws.cell(row=r, column=1, value=name)
        text_cell(ws, r, 2, account)
        text_cell(ws, r, 3, code)
        money_cell(ws, r, 4, amount)
        ws.cell(row=r, column=5, value="CNY")
        if isinstance(when, dt.date):
            c = ws.cell(row=r, column=6, value=when)
            c.number_format = "yyyy-mm-dd"
        else:
            text_cell(ws, r, 6, when)
    save_xlsx(wb, path)
    return path


def write_test_sheet_by_name():
    path = os.path.join(TESTDATA, "xlsx_sheet_by_name", "input.xlsx")
    rows = [
        ("周杰", "6222620110987654325", "301290000246", Decimal("9300.00")),
        ("吴秀英", "6217005844201968377", "105584000135", Decimal("6875.40")),
    ]
    wb = new_workbook()
    summary = wb.active
    summary.title = "Summary"
    summary["A1"] = "Payment batch summary"
    summary["A2"] = "Payments are listed on the next sheet."
    summary["A3"] = "Approved by: Finance"
    ws = wb.create_sheet("Payments")
    ws.append(TEST_HEADER)
    for i, (name, account, code, amount) in enumerate(rows):
        assert luhn_ok(account)
        r = 2 + i
        ws.cell(row=r, column=1, value=name)
        text_cell(ws, r, 2, account)
        text_cell(ws, r, 3, code)
        money_cell(ws, r, 4, amount)
        ws.cell(row=r, column=5, value="CNY")
    save_xlsx(wb, path)
    return path


# ---------------------------------------------------------------------------
# 6. golden-test inputs in other containers (xls, ods, encrypted xlsx, ...)
# ---------------------------------------------------------------------------

def check_cn_test_rows(rows):
    for name, account, code, amount in rows:
        assert account.startswith("62") and len(account) == 19 and luhn_ok(account), account
        assert len(code) == 12 and code.isdigit() and code[:3] in CN_BANKS, code
        assert any(account.startswith(b) for b, _ in CN_BANKS[code[:3]][1]), (account, code)
        if amount is not None:
            assert amount == amount.quantize(CENT)
        name.encode("gbk")


def write_test_xls_legacy():
    """Excel 97-2003 (BIFF8) workbook written by xlwt (`pip install xlwt`).
    xlwt stores no timestamps, so the output is deterministic."""
    import xlwt

    path = os.path.join(TESTDATA, "xls_legacy", "input.xls")
    rows = [
        ("孙丽", "6222022901187654329", "102290002916", Decimal("10250.00")),
        ("马超", "6217005840192837464", "105584001372", Decimal("8765.43")),
        ("朱桂英", "6228481002773319053", "103100004158", Decimal("12000.50")),
    ]
    check_cn_test_rows(rows)
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Sheet1")
    text = xlwt.easyxf(num_format_str="@")
    money = xlwt.easyxf(num_format_str="#,##0.00")
    for col, h in enumerate(TEST_HEADER):
        ws.write(0, col, h)
    for i, (name, account, code, amount) in enumerate(rows, 1):
        ws.write(i, 0, name)
        ws.write(i, 1, account, text)   # string cell (SST), text format
        ws.write(i, 2, code, text)
        ws.write(i, 3, float(amount), money)  # NUMBER cell
        ws.write(i, 4, "CNY")
    for col, w in enumerate([10, 22, 15, 12, 9]):
        ws.col(col).width = w * 256
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wb.save(path)
    return path


ODS_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:number="urn:oasis:names:tc:opendocument:xmlns:datastyle:1.0" '
          'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
          'xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0" '
          'xmlns:dc="http://purl.org/dc/elements/1.1/"')


def _xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_test_ods_calc():
    """OpenDocument spreadsheet (as LibreOffice Calc saves it), built by
    hand with zipfile: `mimetype` first and stored, then meta.xml,
    styles.xml, content.xml and META-INF/manifest.xml, all with fixed
    timestamps."""
    path = os.path.join(TESTDATA, "ods_calc", "input.ods")
    rows = [
        ("胡建华", "6216612903548210765", "104290003627", Decimal("9480.00")),
        ("郭晓东", "6222622904431982573", "301290001845", Decimal("15320.75")),
        ("何海燕", "6212265840665028134", "102584002219", Decimal("7650.20")),
    ]
    check_cn_test_rows(rows)

    def string_cell(value, style=None):
        st = ' table:style-name="%s"' % style if style else ""
        return ('<table:table-cell%s office:value-type="string"><text:p>%s</text:p>'
                '</table:table-cell>' % (st, _xml_escape(value)))

    def float_cell(amount):
        value = format(amount.normalize(), "f")  # 9480.00 -> "9480"
        shown = "{:,.2f}".format(amount)          # "9,480.00"
        return ('<table:table-cell table:style-name="ce2" office:value-type="float" '
                'office:value="%s"><text:p>%s</text:p></table:table-cell>' % (value, shown))

    table_rows = ["<table:table-row>" + "".join(string_cell(h) for h in TEST_HEADER)
                  + "</table:table-row>"]
    for name, account, code, amount in rows:
        table_rows.append("<table:table-row>" + string_cell(name)
                          + string_cell(account, "ce1") + string_cell(code, "ce1")
                          + float_cell(amount) + string_cell("CNY") + "</table:table-row>")

    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<office:document-content %s office:version="1.2">'
        '<office:automatic-styles>'
        '<number:text-style style:name="N100"><number:text-content/></number:text-style>'
        '<number:number-style style:name="N4"><number:number number:decimal-places="2" '
        'number:min-decimal-places="2" number:min-integer-digits="1" number:grouping="true"/>'
        '</number:number-style>'
        '<style:style style:name="ce1" style:family="table-cell" '
        'style:parent-style-name="Default" style:data-style-name="N100"/>'
        '<style:style style:name="ce2" style:family="table-cell" '
        'style:parent-style-name="Default" style:data-style-name="N4"/>'
        '</office:automatic-styles>'
        '<office:body><office:spreadsheet>'
        '<table:table table:name="Sheet1">'
        '<table:table-column table:number-columns-repeated="5" '
        'table:default-cell-style-name="Default"/>'
        '%s'
        '</table:table>'
        '</office:spreadsheet></office:body></office:document-content>\n'
    ) % (ODS_NS, "".join(table_rows))
    styles = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<office:document-styles %s office:version="1.2">'
        '<office:styles><style:style style:name="Default" style:family="table-cell"/>'
        '</office:styles></office:document-styles>\n'
    ) % ODS_NS
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%S")
    meta = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<office:document-meta %s office:version="1.2"><office:meta>'
        '<meta:generator>paygate samples</meta:generator>'
        '<meta:initial-creator>paygate samples</meta:initial-creator>'
        '<meta:creation-date>%s</meta:creation-date>'
        '<dc:creator>paygate samples</dc:creator><dc:date>%s</dc:date>'
        '</office:meta></office:document-meta>\n'
    ) % (ODS_NS, stamp, stamp)
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2">\n'
        ' <manifest:file-entry manifest:full-path="/" manifest:version="1.2" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>\n'
        ' <manifest:file-entry manifest:full-path="meta.xml" manifest:media-type="text/xml"/>\n'
        ' <manifest:file-entry manifest:full-path="styles.xml" manifest:media-type="text/xml"/>\n'
        ' <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>\n'
        ' <manifest:file-entry manifest:full-path="META-INF/manifest.xml" '
        'manifest:media-type="text/xml"/>\n'
        '</manifest:manifest>\n'
    )
    entries = [
        ("mimetype", b"application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED),
        ("meta.xml", meta.encode("utf-8"), zipfile.ZIP_DEFLATED),
        ("styles.xml", styles.encode("utf-8"), zipfile.ZIP_DEFLATED),
        ("content.xml", content.encode("utf-8"), zipfile.ZIP_DEFLATED),
        ("META-INF/manifest.xml", manifest.encode("utf-8"), zipfile.ZIP_DEFLATED),
    ]
    write_fixed_zip(path, entries)
    return path


def write_fixed_zip(path, entries):
    """Write (name, bytes, compress_type) entries in order, fixed timestamps."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data, compress in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME.timetuple()[:6])
            info.compress_type = compress
            info.external_attr = 0o644 << 16
            z.writestr(info, data)


ENCRYPTED_PASSWORD = "secret"


def write_test_xlsx_encrypted():
    """Password-protected .xlsx as Office writes it: an OLE/CFB container
    with EncryptionInfo (ECMA-376 Agile) and EncryptedPackage streams,
    made with msoffcrypto-tool >= 5 (`pip install msoffcrypto-tool`).
    Password: "secret".

    NOT deterministic: the encryption uses random salts and keys, so every
    run would give different bytes. The file is therefore only written when
    it does not exist yet; delete it to regenerate. The inner workbook is
    deterministic."""
    path = os.path.join(TESTDATA, "xlsx_encrypted", "input.xlsx")
    if os.path.exists(path):
        return path + " (exists, kept: encryption is not deterministic)"
    import msoffcrypto
    from msoffcrypto.format.ooxml import OOXMLFile

    rows = [
        ("林子涵", "6227002907123904689", "105290006431", Decimal("11200.00")),
        ("高浩然", "6217851008390216544", "104100002783", Decimal("6980.35")),
    ]
    check_cn_test_rows(rows)
    wb = new_workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(TEST_HEADER)
    for i, (name, account, code, amount) in enumerate(rows):
        r = 2 + i
        ws.cell(row=r, column=1, value=name)
        text_cell(ws, r, 2, account)
        text_cell(ws, r, 3, code)
        money_cell(ws, r, 4, amount)
        ws.cell(row=r, column=5, value="CNY")
    plain = io.BytesIO()
    save_xlsx(wb, plain)
    plain.seek(0)
    encrypted = io.BytesIO()
    OOXMLFile(plain).encrypt(ENCRYPTED_PASSWORD, encrypted)

    # Round trip: the password must open it again to the same workbook.
    encrypted.seek(0)
    check = msoffcrypto.OfficeFile(encrypted)
    assert check.is_encrypted()
    check.load_key(password=ENCRYPTED_PASSWORD)
    out = io.BytesIO()
    check.decrypt(out)
    assert out.getvalue() == plain.getvalue()

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encrypted.getvalue())
    return path


def write_test_zip_not_a_spreadsheet():
    """A zip that looks like a Word document, named .xlsx."""
    path = os.path.join(TESTDATA, "zip_not_a_spreadsheet", "input.xlsx")
    content_types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        '</Types>')
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        '<w:body><w:p><w:r><w:t>This is a letter, not a payment file.</w:t></w:r></w:p>'
        '</w:body></w:document>')
    write_fixed_zip(path, [
        ("[Content_Types].xml", content_types.encode("utf-8"), zipfile.ZIP_DEFLATED),
        ("word/document.xml", document.encode("utf-8"), zipfile.ZIP_DEFLATED),
    ])
    return path


FORMULA_ERROR_CELL = b'<c r="D3" t="e"><f>#REF!+1</f><v>#REF!</v></c>'


def write_test_xlsx_formula_error():
    """Row 3's Amount holds a formula whose cached value is the error #REF!.
    openpyxl writes no cached values, so sheet1.xml is patched after save."""
    path = os.path.join(TESTDATA, "xlsx_formula_error", "input.xlsx")
    rows = [
        ("罗雨桐", "6228453309112457807", "103331000574", Decimal("8820.00")),
        ("郑欣怡", "6222605841203849674", "301584003396", None),  # D3 = #REF!
    ]
    check_cn_test_rows(rows)
    wb = new_workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(TEST_HEADER)
    for i, (name, account, code, amount) in enumerate(rows):
        r = 2 + i
        ws.cell(row=r, column=1, value=name)
        text_cell(ws, r, 2, account)
        text_cell(ws, r, 3, code)
        if amount is None:
            ws.cell(row=r, column=4, value="=#REF!+1")  # replaced below
        else:
            money_cell(ws, r, 4, amount)
        ws.cell(row=r, column=5, value="CNY")

    def patch(xml):
        new, n = re.subn(rb'<c r="D3"[^>]*?(?:/>|>.*?</c>)', FORMULA_ERROR_CELL, xml)
        assert n == 1, n
        return new

    save_xlsx(wb, path, patches={"xl/worksheets/sheet1.xml": patch})
    return path


def write_test_xlsx_offset_range():
    """Table in C5:G7; nothing left of column C or above row 5."""
    path = os.path.join(TESTDATA, "xlsx_offset_range", "input.xlsx")
    rows = [
        ("梁思远", "6222023012065731947", "102301001128", Decimal("13450.60")),
        ("谢文博", "6217001003349872611", "105100003305", Decimal("9100.00")),
    ]
    check_cn_test_rows(rows)
    wb = new_workbook()
    ws = wb.active
    ws.title = "Sheet1"
    top, left = 5, 3  # C5
    for col, h in enumerate(TEST_HEADER):
        ws.cell(row=top, column=left + col, value=h)
    for i, (name, account, code, amount) in enumerate(rows):
        r = top + 1 + i
        ws.cell(row=r, column=left, value=name)
        text_cell(ws, r, left + 1, account)
        text_cell(ws, r, left + 2, code)
        money_cell(ws, r, left + 3, amount)
        ws.cell(row=r, column=left + 4, value="CNY")
    assert ws.min_row == top and ws.min_column == left, ws.dimensions
    save_xlsx(wb, path)
    return path


# ---------------------------------------------------------------------------

def main():
    os.makedirs(SAMPLES, exist_ok=True)
    people, payroll = payroll_people()
    validate_cn(payroll)
    print(write_payroll_csv(payroll), len(payroll), "rows")
    print(write_payroll_xlsx(payroll), len(payroll), "rows")
    path, n, total = write_payroll_gbk(people)
    print(path, n, "rows, control total", total)
    print("%s %d rows" % write_supplier())
    print("%s %d rows" % write_broken())
    print(write_test_numeric_account())
    print(write_test_title_rows_dates())
    print(write_test_sheet_by_name())
    print(write_test_xls_legacy())
    print(write_test_ods_calc())
    print(write_test_xlsx_encrypted())
    print(write_test_zip_not_a_spreadsheet())
    print(write_test_xlsx_formula_error())
    print(write_test_xlsx_offset_range())


if __name__ == "__main__":
    main()
