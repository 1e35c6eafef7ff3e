//! How files travel: compressed with each codec (the result byte-identical
//! on the server), the codec chosen from what the server has and the link
//! as measured, a codec the server lacks refused by preflight, a stream
//! corrupted in transit refused by the checksum with nothing at a final
//! path, and hash caches on both ends that never let a change through.

use controlplane::model::{Source, FILES};
use e2e::report::{self, Plan, Run};
use e2e::{bed_with, run_bootstrap, server_args, snapshot, text, BedOptions};

fn with(args: &[String], more: &[&str]) -> Vec<String> {
    let mut v = args.to_vec();
    v.extend(more.iter().map(|s| s.to_string()));
    v
}

/// Every asset on the server is the local file, byte for byte.
fn assert_identical(bed: &e2e::Bed) {
    let dests: Vec<&str> = FILES.iter().filter(|f| matches!(f.source, Source::Asset(_))).map(|f| f.dest).collect();
    let sums = bed.ssh(&format!("sha256sum {}", dests.join(" "))).unwrap();
    for f in FILES {
        if let Source::Asset(c) = f.source {
            let local = c.iter().map(|c| bed.assets.join(c)).find(|p| p.exists()).unwrap();
            let want = controlplane::local::files::sha256_hex(&std::fs::read(local).unwrap());
            assert!(sums.contains(&format!("{want}  {}", f.dest)), "{} differs on the server", f.dest);
        }
    }
}

/// The snapshot's files (and their sums): a failed stage may have made
/// directories, never a file at a final path, never a temp left behind.
fn files(snapshot: &str) -> Vec<&str> {
    // Directories, and when a unit that is gone was last active (systemd
    // forgets that whenever it collects unloaded units), are not files.
    snapshot.lines().filter(|l| !l.ends_with(" d") && !l.starts_with("absent ") && !l.starts_with("ActiveEnterTimestampMonotonic=")).collect()
}

fn reset(bed: &e2e::Bed) {
    let mut a = vec!["reset".to_string(), bed.dest(), "--yes".into()];
    a.extend(bed.plugin_ssh_args());
    let out = run_bootstrap(&a);
    assert!(out.status.success(), "reset: {:?}", text(&out));
}

#[test]
fn every_codec_lands_byte_identical_and_a_corrupted_stream_never_reaches_a_final_path() {
    let bed = bed_with("codec", &BedOptions { zstd: true, ..Default::default() });
    let args = server_args(&bed, "root");
    for codec in ["zstd", "gzip", "none"] {
        let out = run_bootstrap(&with(&args, &["--compress", codec, "-o", "json"]));
        assert!(out.status.success(), "--compress {codec}: {:?}", text(&out));
        let v: Run = report::parse(&out.stdout);
        assert_eq!(v.compression, codec, "{v:#?}");
        let (sent, size) = (v.bytes_sent, v.bytes_uploaded);
        if codec == "none" {
            assert_eq!(sent, size);
        } else {
            assert!(sent < size / 2, "{codec}: {sent} bytes on the wire for {size}");
        }
        assert_identical(&bed);
        reset(&bed);
    }
    // A decompressor that hands back one byte wrong: the checksum refuses it.
    bed.ssh("printf '#!/bin/sh\\n/usr/bin/zstd \"$@\" | { head -c 1000; head -c 1 >/dev/null; printf X; cat; }\\n' > /usr/local/bin/zstd && chmod 755 /usr/local/bin/zstd")
        .unwrap();
    let before = snapshot(&bed);
    let out = run_bootstrap(&with(&args, &["--compress", "zstd"]));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("checksum mismatch after upload"), "{err}");
    assert_eq!(files(&snapshot(&bed)), files(&before), "something reached a final path (or a temp was left)");
    // A stream that does not decompress at all: refused, named.
    bed.ssh("printf '#!/bin/sh\\nexec /usr/bin/zstd -dcq /dev/null\\n' > /usr/local/bin/zstd").unwrap();
    let before = snapshot(&bed);
    let out = run_bootstrap(&with(&args, &["--compress", "zstd"]));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not decompress") || err.contains("checksum mismatch"), "{err}");
    assert_eq!(files(&snapshot(&bed)), files(&before));
    bed.ssh("rm /usr/local/bin/zstd").unwrap();
}

#[test]
fn a_slow_link_to_a_server_without_zstd_gets_gzip_and_zstd_is_refused_there() {
    let bed = bed_with("gzip", &BedOptions { link: Some("100mbit".into()), ..Default::default() });
    let args = server_args(&bed, "root");
    assert!(bed.ssh("command -v zstd || echo none").unwrap().contains("none"), "the bed has no zstd");
    let out = run_bootstrap(&with(&args, &["--compress", "zstd"]));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--compress zstd: the server has no zstd to decompress with"), "{err}");
    // auto: the link is measured, gzip pays on 100 Mbit/s, the plan says so.
    let out = run_bootstrap(&with(&args, &["--dry-run", "-o", "json"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let v: Plan = report::parse(&out.stdout);
    let transfer = v.stage().and_then(|s| s.transfer.clone()).expect("a stage with its transfer");
    assert_eq!(transfer.codec, "gzip", "{transfer:#?}");
    let mbps = transfer.link_bytes_per_second.expect("the link was measured") * 8.0 / 1e6;
    assert!((75.0..115.0).contains(&mbps), "measured {mbps} Mbit/s on a 100 Mbit/s link");
    let out = run_bootstrap(&with(&args, &["-o", "json"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let v: Run = report::parse(&out.stdout);
    assert_eq!(v.compression, "gzip");
    assert!(v.bytes_sent < v.bytes_uploaded / 2, "{v:#?}");
    assert_identical(&bed);
}

#[test]
fn neither_hash_cache_lets_a_changed_file_through() {
    let bed = bed_with("cache", &BedOptions::default());
    let args = server_args(&bed, "root");
    let out = run_bootstrap(&args);
    assert!(out.status.success(), "{:?}", text(&out));
    let changed = |out: &std::process::Output| -> Vec<String> {
        let v: Plan = report::parse(&out.stdout);
        v.stage().map(|s| s.staged().into_iter().map(|f| f.dest).collect()).unwrap_or_default()
    };
    let dry = with(&args, &["--dry-run", "-o", "json"]);
    assert!(changed(&run_bootstrap(&dry)).is_empty());
    // A local asset rewritten in place, its size and mtime put back. (The
    // bed's binaries are symlinks into the shared build cache: this test
    // changes a copy of its own, never what they point at.)
    let kubectl = ["downloads/client/kubectl", "kubectl"].iter().map(|p| bed.assets.join(p)).find(|p| p.exists()).unwrap();
    let original = std::fs::read(&kubectl).unwrap();
    std::fs::remove_file(&kubectl).unwrap();
    std::fs::write(&kubectl, &original).unwrap();
    assert!(changed(&run_bootstrap(&dry)).is_empty(), "the same bytes in another file are the same asset");
    let mtime = std::fs::metadata(&kubectl).unwrap().modified().unwrap();
    let mut bytes = original.clone();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&kubectl, &bytes).unwrap();
    std::fs::File::options().write(true).open(&kubectl).unwrap().set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(&kubectl).unwrap().modified().unwrap(), mtime);
    assert_eq!(changed(&run_bootstrap(&dry)), ["/usr/local/bin/kubectl"], "the local cache let a changed asset through");
    std::fs::write(&kubectl, &original).unwrap();
    // A placed file changed on the server, its size and mtime put back
    // (kubectl: not running, so it can be written).
    bed.ssh("set -e; f=/usr/local/bin/kubectl; m=$(stat -c %y $f); printf X | dd of=$f bs=1 seek=100 conv=notrunc status=none; touch -d \"$m\" $f").unwrap();
    assert_eq!(changed(&run_bootstrap(&dry)), ["/usr/local/bin/kubectl"], "the server's cache let a changed file through");
    // A foreign cache on the server is not believed: made world-writable, it is ignored (and rewritten).
    let out = run_bootstrap(&args);
    assert!(out.status.success(), "{:?}", text(&out));
    bed.ssh("chmod 666 /var/lib/kubectl-bootstrap/hashes && sed -i 's/ [0-9a-f]\\{64\\} / 0000000000000000000000000000000000000000000000000000000000000000 /' /var/lib/kubectl-bootstrap/hashes").unwrap();
    assert!(changed(&run_bootstrap(&dry)).is_empty(), "a forged cache was believed");
}
