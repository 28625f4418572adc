//! Hostile inputs, run through the `paygate` binary as a user would drop them on it: each is
//! refused (or read) with a clear message naming the file and what is wrong, writes nothing,
//! and stays within 200 MB of memory (the child's peak resident set, VmHWM, sampled). Each run has
//! a deadline (a hang is a failure); the time each took is printed, not asserted: speed is for
//! the benchmarks.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MAX_RSS_KB: i64 = 200 * 1024;
const DEADLINE: Duration = Duration::from_secs(120);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: Option<i32>,
    out: String,
    rss_kb: i64,
}

/// Runs paygate with `args`, waiting with a deadline, and reads the child's peak RSS.
fn paygate(dir: &Path, args: &[&str]) -> Run {
    let out_path = dir.join(".paygate-output");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paygate"))
        .current_dir(root())
        .env_remove("PAYGATE_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run paygate");
    let pid = child.id();
    let started = Instant::now();
    // The peak resident set of the child's own image (VmHWM: the high-water mark of its memory
    // since exec, monotonic), sampled every 2 ms until it exits; wait4's ru_maxrss would also
    // count the test process's memory the child shared before exec. A sample can only miss
    // what the last 2 ms added (page faults run at a few GB/s: some MB), and a process that
    // exits before the first sample has not had the time to touch 200 MB.
    let mut peak_kb = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait for paygate") {
            let out = std::fs::read_to_string(&out_path).unwrap_or_default();
            std::fs::remove_file(&out_path).unwrap();
            assert!(
                status.signal().is_none(),
                "paygate {args:?} was killed by signal {:?}: {out}",
                status.signal()
            );
            eprintln!(
                "  {:>7.2} s {:>6} MB  paygate {}",
                started.elapsed().as_secs_f64(),
                peak_kb / 1024,
                args.join(" ")
            );
            return Run {
                code: status.code(),
                out,
                rss_kb: peak_kb,
            };
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("paygate {args:?} still ran after {DEADLINE:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Converts `file` for the sample payroll channel, asking for the bank file at `out`: refused
/// inputs must leave no bank file behind.
fn convert(dir: &Path, file: &Path) -> Run {
    let out = dir.join("bank-file.xml");
    let r = paygate(
        dir,
        &[
            "--config",
            "samples/paygate.toml",
            "convert",
            file.to_str().unwrap(),
            "--channel",
            "payroll",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        !out.exists(),
        "{}: a bank file was written for a refused input",
        file.display()
    );
    r
}

/// Validates `file` for the golden tests' payroll channel (the default 100 MiB file limit).
fn validate(dir: &Path, file: &Path) -> Run {
    paygate(
        dir,
        &[
            "--config",
            "tests/data/config.toml",
            "validate",
            file.to_str().unwrap(),
            "--channel",
            "payroll",
        ],
    )
}

fn inspect(dir: &Path, file: &Path) -> Run {
    paygate(dir, &["inspect", file.to_str().unwrap()])
}

/// The run refused the file with exit 2 (unreadable) or 1 (findings), within the memory bound,
/// and its message names the file and says `what`.
fn refused(r: &Run, file: &Path, codes: &[i32], what: &[&str]) {
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        r.code.is_some_and(|c| codes.contains(&c)),
        "{name}: exit {:?}, expected one of {codes:?}: {}",
        r.code,
        r.out
    );
    assert!(
        r.out.contains(name),
        "{name}: the message must name the file: {}",
        r.out
    );
    for w in what {
        assert!(r.out.contains(w), "{name}: expected `{w}` in: {}", r.out);
    }
    assert!(!r.out.contains("panicked"), "{name}: {}", r.out);
    assert!(
        r.rss_kb <= MAX_RSS_KB,
        "{name}: peak memory {} MB, over 200 MB",
        r.rss_kb / 1024
    );
}

/// The report table has a line for row `row` with `code`.
fn row_has(out: &str, row: u64, code: &str) -> bool {
    out.lines()
        .any(|l| l.split_whitespace().next() == Some(row.to_string().as_str()) && l.contains(code))
}

/// A zip with the given entries (name, deflated data, declared uncompressed size, CRC-32),
/// written by hand so that the declared sizes can lie.
fn zip<D: AsRef<[u8]>>(entries: &[(&str, D, u64, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, size, crc) in entries {
        let offset = out.len() as u32;
        let size32 = (*size).min(u32::MAX as u64) as u32;
        let local = |v: &mut Vec<u8>, sig: u32| {
            v.extend(sig.to_le_bytes());
            if sig == 0x02014b50 {
                v.extend(20u16.to_le_bytes()); // made by
            }
            v.extend(20u16.to_le_bytes()); // needed
            v.extend(0u16.to_le_bytes()); // flags
            v.extend(8u16.to_le_bytes()); // deflate
            v.extend(0u32.to_le_bytes()); // time, date
            v.extend(crc.to_le_bytes());
            v.extend((data.as_ref().len() as u32).to_le_bytes());
            v.extend(size32.to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes()); // extra
        };
        local(&mut out, 0x04034b50);
        out.extend(name.as_bytes());
        out.extend(data.as_ref());
        local(&mut central, 0x02014b50);
        central.extend(0u16.to_le_bytes()); // comment
        central.extend(0u16.to_le_bytes()); // disk
        central.extend(0u16.to_le_bytes()); // internal attrs
        central.extend(0u32.to_le_bytes()); // external attrs
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x06054b50u32.to_le_bytes());
    out.extend(0u32.to_le_bytes()); // disks
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A raw deflate stream of `mib` MiB of `byte`, made by repeating one sync-flushed block (so it
/// costs the test nothing to make a gigabyte).
fn deflated_repeat(byte: u8, mib: usize) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let chunk = vec![byte; 1024 * 1024];
    let mut block = Vec::with_capacity(64 * 1024);
    c.compress_vec(&chunk, &mut block, flate2::FlushCompress::Sync)
        .unwrap();
    let mut out = Vec::with_capacity(block.len() * mib + 2);
    for _ in 0..mib {
        out.extend(&block);
    }
    out.extend([0x03, 0x00]); // an empty final block
    out
}

/// A zip entry holding `data`, deflated, with its true size and checksum.
fn honest<'a>(name: &'a str, data: &[u8]) -> (&'a str, Vec<u8>, u64, u32) {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Finish)
        .unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(data);
    (name, out, data.len() as u64, crc.sum())
}

const XLSX_PARTS: &[&str] = &["[Content_Types].xml", "xl/workbook.xml"];

/// An .xlsx-shaped zip: honest small parts, and `extra` ones.
fn xlsx_with(extra: &[(&str, Vec<u8>, u64, u32)]) -> Vec<u8> {
    let small = deflated_repeat(b' ', 1);
    let mut crc = flate2::Crc::new();
    crc.update(&vec![b' '; 1024 * 1024]);
    let mut entries: Vec<(&str, Vec<u8>, u64, u32)> = XLSX_PARTS
        .iter()
        .map(|n| (*n, small.clone(), 1024 * 1024, crc.sum()))
        .collect();
    entries.extend(extra.iter().cloned());
    zip(&entries)
}

/// An entry whose data is `deflated` and which declares `size` (its checksum is never reached).
fn lying<'a>(name: &'a str, deflated: &[u8], size: u64) -> (&'a str, Vec<u8>, u64, u32) {
    (name, deflated.to_vec(), size, 0)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn hostile_spreadsheets_and_csv_are_refused_clearly_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // A truncated workbook.
    let good = std::fs::read(root().join("samples/payroll.xlsx")).unwrap();
    let f = write(dir, "truncated.xlsx", &good[..good.len() / 2]);
    refused(&convert(dir, &f), &f, &[2], &["damaged"]);

    // A zip bomb declaring its size: 1 GiB of sheet, refused by the directory alone.
    let gib = deflated_repeat(b'<', 1024);
    let f = write(
        dir,
        "bomb-declared.xlsx",
        &xlsx_with(&[lying("xl/worksheets/sheet1.xml", &gib, 1 << 30)]),
    );
    refused(&convert(dir, &f), &f, &[2], &["limits.max_unpacked_bytes"]);

    // The same bomb lying about its size: caught while counting what it inflates to.
    let f = write(
        dir,
        "bomb-lying.xlsx",
        &xlsx_with(&[lying("xl/worksheets/sheet1.xml", &gib, 4096)]),
    );
    refused(
        &convert(dir, &f),
        &f,
        &[2],
        &["sheet1.xml", "larger than its declared"],
    );

    // Huge shared strings (honest), and huge styles (lying).
    let big = deflated_repeat(b'a', 200);
    let f = write(
        dir,
        "huge-shared-strings.xlsx",
        &xlsx_with(&[lying("xl/sharedStrings.xml", &big, 200 << 20)]),
    );
    refused(
        &convert(dir, &f),
        &f,
        &[2],
        &["xl/sharedStrings.xml", "not a normal spreadsheet"],
    );
    let f = write(
        dir,
        "huge-styles.xlsx",
        &xlsx_with(&[lying("xl/styles.xml", &big, 10_000)]),
    );
    refused(
        &convert(dir, &f),
        &f,
        &[2],
        &["xl/styles.xml", "larger than its declared"],
    );

    // An .xls whose OLE header is broken.
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.extend(std::iter::repeat_n(0xFFu8, 4096));
    let f = write(dir, "broken-ole.xls", &ole);
    refused(&convert(dir, &f), &f, &[2], &["damaged"]);

    // An .xls that made calamine panic (found by fuzzing): damaged, and no panic message.
    let f = dir.join("fuzzed-cfb.xls");
    std::fs::copy(root().join("tests/data/xls_damaged_cfb/input.xls"), &f).unwrap();
    refused(&convert(dir, &f), &f, &[2], &["damaged"]);
    // A 10 KB .xls that calamine would read into a 24 GB grid (found by fuzzing).
    let f = dir.join("grid-bomb.xls");
    std::fs::copy(root().join("tests/data/xls_grid_bomb/input.xls"), &f).unwrap();
    refused(&convert(dir, &f), &f, &[2], &["not a readable .xls"]);
    // An .xlsx with two cells, A1 and XFD1048576 (a 17-billion-cell grid if read whole):
    // streamed, it is two rows, read in kilobytes.
    let f = dir.join("far-cells.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    // (named as the sample payroll channel's `sheet` says)
    let ws = wb.add_worksheet().set_name("Payroll").unwrap();
    ws.write_string(0, 0, "Name").unwrap();
    ws.write_number(1_048_575, 16_383, 1.0).unwrap();
    wb.save(&f).unwrap();
    refused(&convert(dir, &f), &f, &[1], &["header.missing"]);
    // Three thousand rows reaching column XFD: refused once their cells pass 32 million.
    let f = dir.join("far-rows.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet().set_name("Payroll").unwrap();
    for (c, h) in ["姓名", "账号", "金额"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for r in 1..3_000u32 {
        ws.write_number(r, 16_383, 1.0).unwrap();
    }
    wb.save(&f).unwrap();
    refused(
        &convert(dir, &f),
        &f,
        &[2],
        &["reaches over 32000000 cells", "save the sheet as CSV"],
    );
    // An .ods with one row of 1,000 valued cells repeated a million times.
    let content = br#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"><office:body><office:spreadsheet><table:table table:name="S"><table:table-row table:number-rows-repeated="1000000"><table:table-cell table:number-columns-repeated="1000" office:value-type="float" office:value="1"/></table:table-row></table:table></office:spreadsheet></office:body></office:document-content>"#;
    let f = write(
        dir,
        "repeated.ods",
        &zip(&[
            honest(
                "mimetype",
                b"application/vnd.oasis.opendocument.spreadsheet",
            ),
            honest("content.xml", content),
        ]),
    );
    refused(&convert(dir, &f), &f, &[2], &["span 1000000000 cells"]);

    // A 1.5 GB sparse CSV: refused by its size before a byte is read.
    let f = dir.join("sparse.csv");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(1536 * 1024 * 1024)
        .unwrap();
    refused(&convert(dir, &f), &f, &[2], &["limits.max_file_bytes"]);
    std::fs::remove_file(&f).unwrap();

    // A 100 MB single cell (just under the 100 MiB file limit).
    let f = dir.join("huge-cell.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
        w.write_all("姓名,账号,金额\n\"".as_bytes()).unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..95 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"\",6222020200112233445,100.00\n").unwrap();
    }
    let r = validate(dir, &f);
    refused(&r, &f, &[2], &["line 2", "MB long"]);
    std::fs::remove_file(&f).unwrap();

    // A quote left open over 40 MB of short lines: refused once the row passes 2 MB, while
    // it is read (the line limit never sees a long line).
    let f = dir.join("open-quote.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
        w.write_all("姓名,账号,金额\n张伟,6222020200112233445,100.00\n\"".as_bytes())
            .unwrap();
        let chunk = "x\n".repeat(512 * 1024);
        for _ in 0..40 {
            w.write_all(chunk.as_bytes()).unwrap();
        }
    }
    let r = validate(dir, &f);
    refused(
        &r,
        &f,
        &[2],
        &["the row starting near line 3", "quote left open"],
    );
    std::fs::remove_file(&f).unwrap();

    // 10,000 columns: read, and the row's problems reported.
    let mut wide = String::from("姓名,账号,金额");
    for i in 0..9_997 {
        wide.push_str(&format!(",C{i}"));
    }
    wide.push_str("\n张伟,6222020200112233445,abc");
    wide.push_str(&",x".repeat(9_997));
    wide.push('\n');
    let f = write(dir, "wide.csv", wide.as_bytes());
    refused(&convert(dir, &f), &f, &[1], &["amount.not_a_number"]);

    // NUL bytes, binary junk and a PDF under a .csv name.
    let f = write(
        dir,
        "nul.csv",
        "姓名,账号,金额\n张\0伟,6222020200112233445,100\n".as_bytes(),
    );
    refused(&convert(dir, &f), &f, &[2], &["binary data"]);
    let mut junk = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..(1 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        junk.push(x as u8);
    }
    let f = write(dir, "junk.csv", &junk);
    refused(
        &convert(dir, &f),
        &f,
        &[2],
        &["not a spreadsheet or CSV file"],
    );
    let f = write(
        dir,
        "invoice.csv",
        b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n",
    );
    refused(&convert(dir, &f), &f, &[2], &["a PDF document"]);

    // Mixed line endings (CRLF, LF and a lone CR) and a file of lone CRs (old Mac Excel).
    let f = write(
        dir,
        "mixed-endings.csv",
        "姓名,账号,金额\r\n张伟,6222020200112233445,100.00\n王芳,6222020200112233446,200.00\r\n李娜,6222020200112233447,abc\n"
            .as_bytes(),
    );
    let r = convert(dir, &f);
    refused(&r, &f, &[1], &["3 rows"]);
    assert!(row_has(&r.out, 4, "amount.not_a_number"), "{}", r.out);
    let f = write(
        dir,
        "cr-only.csv",
        "姓名,账号,金额\r张伟,6222020200112233445,100.00\r李娜,6222020200112233447,abc\r"
            .as_bytes(),
    );
    let r = convert(dir, &f);
    refused(&r, &f, &[1], &["2 rows"]);
    assert!(row_has(&r.out, 3, "amount.not_a_number"), "{}", r.out);

    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            ![".csv", ".xlsx", ".xls", ".ods"]
                .iter()
                .any(|e| n.ends_with(e))
        })
        .collect();
    assert!(left.is_empty(), "written beside the inputs: {left:?}");
}

#[test]
fn hostile_bank_files_are_refused_clearly_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pain002 = |body: &str| {
        format!(
            "<?xml version=\"1.0\"?>\n{body}<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.002.001.03\"><CstmrPmtStsRpt><GrpHdr><MsgId>&lol9;</MsgId></GrpHdr></CstmrPmtStsRpt></Document>\n"
        )
    };
    // Billion laughs.
    let mut dtd = String::from("<!DOCTYPE Document [\n<!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!(
                "&lol{};",
                if i == 1 {
                    String::new()
                } else {
                    (i - 1).to_string()
                }
            )
            .repeat(10)
        ));
    }
    dtd.push_str("]>\n");
    let f = write(dir, "laughs.pain002.xml", pain002(&dtd).as_bytes());
    refused(&inspect(dir, &f), &f, &[1], &["DTD"]);
    // An external entity (XXE).
    let xxe = "<!DOCTYPE Document [<!ENTITY lol9 SYSTEM \"file:///etc/passwd\">]>\n";
    let f = write(dir, "xxe.pain002.xml", pain002(xxe).as_bytes());
    let r = inspect(dir, &f);
    refused(&r, &f, &[1], &["DTD"]);
    assert!(
        !r.out.contains("root:"),
        "the external entity was read: {}",
        r.out
    );
    // The entity alone, with no DTD: not expanded either.
    let f = write(dir, "entity.pain002.xml", pain002("").as_bytes());
    refused(&inspect(dir, &f), &f, &[1], &["&lol9;", "not expanded"]);

    // Nested 10,000 deep.
    let deep = format!(
        "<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\">{}{}</Document>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    let f = write(dir, "deep.camt053.xml", deep.as_bytes());
    refused(&inspect(dir, &f), &f, &[1], &["deep"]);

    // A camt.053 with 1M entries: refused by size before it is read.
    let f = dir.join("million.camt053.xml");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
        w.write_all(b"<?xml version=\"1.0\"?><Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\"><BkToCstmrStmt><GrpHdr><MsgId>M</MsgId><CreDtTm>2026-12-01T10:00:00</CreDtTm></GrpHdr><Stmt><Id>S</Id><CreDtTm>2026-12-01T10:00:00</CreDtTm><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>").unwrap();
        for i in 0..1_000_000 {
            write!(w, "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts><BkTxCd/><NtryDtls><TxDtls><Refs><EndToEndId>E{i}</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>").unwrap();
        }
        w.write_all(b"</Stmt></BkToCstmrStmt></Document>").unwrap();
    }
    refused(&inspect(dir, &f), &f, &[1], &["limit for bank files"]);
    // Cut to just under the size limit: refused by its element count, in bounded memory.
    let limit = paygate::bank::xml::MAX_BYTES as u64 - 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(limit)
        .unwrap();
    refused(&inspect(dir, &f), &f, &[1], &["elements"]);
}

#[test]
fn a_config_that_crashed_the_loader_is_a_list_of_problems() {
    // Found by fuzzing the config loader: `date_format = "%d/%}/%Y"` made the check that
    // formats a probe date panic inside chrono.
    // So did `%d/%m/%company.accouY`, whose `%c` asks a date for its time.
    let tmp = tempfile::tempdir().unwrap();
    for (file, format) in [
        ("fuzz-config-date-format.toml", "%d/%}/%Y"),
        ("fuzz-config-date-time-format.toml", "%d/%m/%company.accouY"),
    ] {
        let f = root().join("tests/hostile").join(file);
        let r = paygate(
            tmp.path(),
            &["--config", f.to_str().unwrap(), "check-config"],
        );
        let said = format!("channels.supplier-de.date_format: `{format}` is not a date format");
        refused(&r, &f, &[78], &[said.as_str()]);
    }
}
