#!/usr/bin/env bash
# Walks the sample files through the commands paygate has today: builds paygate, checks the
# sample config, validates every sample (the broken one shows the error report) and converts
# them to the banks' formats (pain.001, the GBK payroll layout, a fixed-width layout).
# Run from anywhere: bash samples/walkthrough.sh
set -uo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: needs Rust (cargo); see https://rustup.rs" >&2; exit 2; }
bash .ci/deps || exit 2
echo "==> building paygate"
cargo build --quiet --locked || exit 2
pg() { echo; echo "\$ paygate $*"; ./target/debug/paygate --config samples/paygate.toml "$@"; echo "(exit $?)"; }
pg check-config
pg validate samples/payroll.xlsx --channel payroll
pg validate samples/payroll-gbk.csv --channel payroll
pg validate samples/supplier.csv --channel supplier
pg validate samples/broken.csv --channel supplier
pg formats
mkdir -p target/demo
pg convert samples/supplier.csv --channel supplier -o target/demo/supplier.pain001.xml
pg convert samples/payroll-gbk.csv --channel payroll -o target/demo/payroll-icbc.csv
echo; echo "\$ head -3 target/demo/payroll-icbc.csv   (GBK, shown as UTF-8)"
iconv -f GBK -t UTF-8 target/demo/payroll-icbc.csv 2>/dev/null | head -3
pg convert samples/payroll.xlsx --channel payroll --format fixed-width-gbk -o target/demo/payroll-fixed.txt
pg convert samples/broken.csv --channel supplier -o target/demo/broken.xml

# The wire to the bank, over a folder transport: a company key made here, GnuPG plays the bank.
if ! command -v gpg >/dev/null; then
    echo; echo "(skipping the OpenPGP part of the demo: gpg is not installed; apt-get install gnupg)"
    exit 0
fi
root=$(pwd)
D="$root/target/demo/wire"
[ -n "$root" ] && [ "$D" != "/target/demo/wire" ] || exit 2
rm -rf "$D" && mkdir -p "$D/keys" "$D/bank/in" "$D/bank/out" "$D/bank-gpg" && chmod 700 "$D/bank-gpg"
export GNUPGHOME="$D/bank-gpg"
bgpg() { gpg --batch --no-tty --trust-model always --pinentry-mode loopback --passphrase '' "$@"; }
bgpg --quick-generate-key "Demo Bank H2H <h2h@bank.example>" ed25519 sign 2y 2>/dev/null
BANK_FPR=$(bgpg --list-keys --with-colons | awk -F: '/^fpr/{print $10; exit}')
bgpg --quick-add-key "$BANK_FPR" cv25519 encr 2y 2>/dev/null
bgpg --armor --export "$BANK_FPR" > "$D/keys/bank.asc"
echo; echo "\$ paygate keys generate --userid 'Acme Treasury <treasury@acme.example>' --dir $D/keys"
./target/debug/paygate keys generate --userid "Acme Treasury <treasury@acme.example>" --dir "$D/keys" | head -3
CO_FPR=$(./target/debug/paygate keys show "$D/keys/company.pub.asc" | awk '/fingerprint/{print $2}')
bgpg --import "$D/keys/company.pub.asc" 2>/dev/null
sed "s#\"\.\./#\"$root/#g" samples/paygate.toml > "$D/paygate.toml"
cat >> "$D/paygate.toml" <<CONFIG

[company.pgp]
secret_key = "$D/keys/company.sec.asc"
fingerprint = "$CO_FPR"

[banks.eurobank.pgp]
keys = ["$D/keys/bank.asc"]
fingerprints = ["$BANK_FPR"]

[banks.eurobank.transport]
type = "folder"
upload_dir = "$D/bank/in"
download_dir = "$D/bank/out"
remote_name = "{company}_{msgid}.xml.pgp"
CONFIG
pw() { echo; echo "\$ paygate $*"; ./target/debug/paygate --config "$D/paygate.toml" "$@"; echo "(exit $?)"; }
pw convert samples/supplier.csv --channel supplier -o "$D/supplier.xml" 2>&1 | tail -2
MSGID=$(grep -o '<MsgId>[^<]*' "$D/supplier.xml" | cut -c8-)
pw seal "$D/supplier.xml" --bank eurobank -o "$D/ACME_$MSGID.xml.pgp"
pw send "$D/ACME_$MSGID.xml.pgp" --bank eurobank
pw send "$D/ACME_$MSGID.xml.pgp" --bank eurobank
echo; echo "--- the bank decrypts what arrived, with GnuPG:"
bgpg --status-fd 1 -d "$D/bank/in/ACME_$MSGID.xml.pgp" 2>/dev/null | grep -E "GOODSIG|DECRYPTION_OKAY"
echo "--- the bank answers: a signed and encrypted status file, and an unsigned one"
cat > "$D/pain002.xml" <<PAIN002
<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>
<GrpHdr><MsgId>BANK-STS-0001</MsgId><CreDtTm>2026-11-30T10:00:00</CreDtTm></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>$MSGID</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId><GrpSts>PART</GrpSts></OrgnlGrpInfAndSts>
<OrgnlPmtInfAndSts><OrgnlPmtInfId>$MSGID-3</OrgnlPmtInfId><TxInfAndSts><OrgnlEndToEndId>SUP-20261130-0007</OrgnlEndToEndId><TxSts>RJCT</TxSts><StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf></TxInfAndSts></OrgnlPmtInfAndSts>
</CstmrPmtStsRpt></Document>
PAIN002
bgpg -r "$CO_FPR" --sign --encrypt -o "$D/bank/out/PAIN002_$MSGID.xml.pgp" "$D/pain002.xml"
echo "<Document>forged</Document>" | bgpg -r "$CO_FPR" --encrypt -o "$D/bank/out/UNSIGNED.xml.pgp"
pw fetch --bank eurobank
echo; echo "(convert is a dry run and stores no batch, so the bank's answer is kept as an unmatched report;"
echo " batches sent by the daemon are matched by their MsgId and reconciled payment by payment)"
OPENED=$(ls -t "$root"/target/paygate-demo/data/spool/eurobank/opened/*PAIN002_"$MSGID".xml | head -1)
pw inspect "$OPENED" --lang zh
pw batches
pw check --bank eurobank
gpgconf --kill all 2>/dev/null
exit 0
