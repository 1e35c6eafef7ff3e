//! Compression of large uploads on the jumpbox: the file is cut into chunks
//! compressed on every core, written in order as concatenated frames (zstd)
//! or members (gzip), which the server's `zstd -d` / `gzip -d` read back as
//! one stream. Memory is bounded by a couple of batches of chunks, never
//! the file. Which codec, if any, pays on a link is [`choose`]'s to say,
//! from what the server has, the link as measured and a sample of the file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// How an upload travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    None,
    Zstd,
    Gzip,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }
    /// The server's command that turns the stream on stdin back into the file.
    pub fn decompress(self) -> Option<&'static str> {
        match self {
            Codec::None => None,
            Codec::Zstd => Some("zstd -dcq"),
            Codec::Gzip => Some("gzip -dc"),
        }
    }
    /// Roughly how fast the server decompresses (bytes of output per
    /// second, one core): what bounds a compressed transfer on a fast link.
    fn server_speed(self) -> f64 {
        match self {
            Codec::None => f64::INFINITY,
            Codec::Zstd => 600e6,
            Codec::Gzip => 150e6,
        }
    }
}

/// `--compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// The fastest of what the server has, when it pays on this link.
    #[default]
    Auto,
    Use(Codec),
}

/// Chunks are compressed independently, this big.
pub const CHUNK: usize = 4 << 20;

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 8)
}

/// One chunk, compressed on its own (a zstd frame, a gzip member).
/// Trimmed to its length: the compressor's worst-case buffer would
/// otherwise stay allocated while the chunk waits to be written.
pub fn compress_chunk(codec: Codec, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = match codec {
        Codec::None => data.to_vec(),
        Codec::Zstd => zstd::bulk::compress(data, 1)?,
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), flate2::Compression::fast());
            e.write_all(data)?;
            e.finish()?
        }
    };
    out.shrink_to_fit();
    Ok(out)
}

/// What a codec does to a file here: compressed/original size and the
/// compressor's speed on every core (bytes of input per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub ratio: f64,
    pub bytes_per_second: f64,
}

/// Compresses up to `threads()` chunks from the middle of `path` at once,
/// as [`stream`] would, and times it.
pub fn sample(codec: Codec, mut f: std::fs::File) -> std::io::Result<Sample> {
    let len = f.metadata()?.len();
    let n = threads();
    let want = (CHUNK * n) as u64;
    f.seek(SeekFrom::Start(len.saturating_sub(want) / 2))?;
    let mut buf = Vec::with_capacity(want.min(len) as usize);
    f.take(want).read_to_end(&mut buf)?;
    let t = Instant::now();
    let out: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = buf.chunks(CHUNK).map(|c| s.spawn(move || compress_chunk(codec, c))).collect();
        hs.into_iter().map(|h| h.join().expect("compression does not panic")).collect()
    });
    let secs = t.elapsed().as_secs_f64().max(1e-4);
    let mut compressed = 0;
    for o in out {
        compressed += o?.len();
    }
    Ok(Sample { ratio: compressed as f64 / buf.len().max(1) as f64, bytes_per_second: buf.len() as f64 / secs })
}

/// Chunk-sized buffers come and go on many threads: glibc would raise its
/// mmap threshold after the first is freed and keep the next ones in
/// per-thread arenas, where freed memory stays resident (the upload's peak
/// grew with every lane). A fixed threshold maps each one and unmaps it
/// when freed.
fn map_large_buffers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(target_env = "gnu")]
    ONCE.call_once(|| unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    });
    #[cfg(not(target_env = "gnu"))]
    ONCE.call_once(|| ());
}

/// Progress of a [`stream`]: bytes of the file read, bytes written out.
#[derive(Debug, Default)]
pub struct Progress {
    pub read: AtomicU64,
    pub written: AtomicU64,
}

/// Streams the first `size` bytes of `path` into `out`, compressed with
/// `codec`: batches of chunks compressed in parallel while the previous
/// batch is written (at most two batches in memory).
pub fn stream(codec: Codec, file: std::fs::File, size: u64, out: impl Write + Send, progress: &Progress) -> std::io::Result<()> {
    map_large_buffers();
    let mut f = file.take(size);
    let n = threads();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(1);
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> std::io::Result<()> {
            let mut out = out;
            for batch in rx {
                for c in batch {
                    out.write_all(&c)?;
                    progress.written.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
            }
            out.flush()
        });
        let read = (|| -> std::io::Result<()> {
            loop {
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut c = Vec::with_capacity(CHUNK);
                    (&mut f).take(CHUNK as u64).read_to_end(&mut c)?;
                    if c.is_empty() {
                        break;
                    }
                    progress.read.fetch_add(c.len() as u64, Ordering::Relaxed);
                    chunks.push(c);
                }
                if chunks.is_empty() {
                    return Ok(());
                }
                let done: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|s| {
                    let hs: Vec<_> = chunks.iter().map(|c| s.spawn(move || compress_chunk(codec, c))).collect();
                    hs.into_iter().map(|h| h.join().expect("compression does not panic")).collect()
                });
                let batch = done.into_iter().collect::<std::io::Result<Vec<_>>>()?;
                if tx.send(batch).is_err() {
                    // The writer stopped (the server went away): its error says why.
                    return Ok(());
                }
            }
        })();
        drop(tx);
        let wrote = writer.join().expect("the writer does not panic");
        read.and(wrote)
    })
}

/// Why a transfer goes the way it does, for the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub codec: Codec,
    /// The link as measured (bytes per second), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_bytes_per_second: Option<f64>,
    /// The chosen codec's sample, when one was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    pub why: String,
}

impl Decision {
    pub fn none(why: impl Into<String>) -> Decision {
        Decision { codec: Codec::None, link_bytes_per_second: None, sample: None, why: why.into() }
    }
}

/// Seconds to move `bytes` with `codec` over a link of `link` bytes/s.
/// Counted as if compressing and sending did not overlap: on a fast link
/// the sending is itself CPU-bound (the SSH cipher) and competes with the
/// compressor for the same cores, so only a link clearly slower than the
/// compressor makes compression pay.
pub fn estimate(codec: Codec, bytes: u64, link: f64, s: Option<Sample>) -> f64 {
    let b = bytes as f64;
    match (codec, s) {
        (Codec::None, _) | (_, None) => b / link,
        (c, Some(s)) => b / s.bytes_per_second + (b * s.ratio / link).max(b / c.server_speed()),
    }
}

/// The codec for `bytes` of large files over a link of `link` bytes/s, of
/// those the server has, each with its sample here: the fastest estimate,
/// and only if it beats sending as is by a clear margin (15 %).
pub fn choose(bytes: u64, link: f64, candidates: &[(Codec, Sample)]) -> Decision {
    let plain = estimate(Codec::None, bytes, link, None);
    let best = candidates.iter().map(|(c, s)| (*c, *s, estimate(*c, bytes, link, Some(*s)))).min_by(|a, b| a.2.total_cmp(&b.2));
    let mbit = link * 8.0 / 1e6;
    match best {
        Some((c, s, t)) if t < plain * 0.85 => Decision {
            codec: c,
            link_bytes_per_second: Some(link),
            sample: Some(s),
            why: format!(
                "link {mbit:.0} Mbit/s measured; {} -1 makes it {:.0}% at {:.0} MB/s here: ≈{t:.1}s instead of {plain:.1}s",
                c.name(),
                s.ratio * 100.0,
                s.bytes_per_second / 1e6
            ),
        },
        Some((c, _, t)) => Decision {
            codec: Codec::None,
            link_bytes_per_second: Some(link),
            sample: None,
            why: format!("link {mbit:.0} Mbit/s measured: as is ≈{plain:.1}s, {} would take ≈{t:.1}s", c.name()),
        },
        None => Decision { codec: Codec::None, link_bytes_per_second: Some(link), sample: None, why: "the server has neither zstd nor gzip".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<u8> {
        // Compressible but not trivially: a binary-like mix.
        (0..(CHUNK * 2 + 12345) as u32).map(|i| ((i / 7) % 251) as u8 ^ if i % 97 == 0 { (i >> 8) as u8 } else { 0 }).collect()
    }

    /// What the stream holds is what the server's tools read back.
    #[test]
    fn streams_decompress_with_the_servers_tools_to_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let bytes = data();
        std::fs::write(&src, &bytes).unwrap();
        for codec in [Codec::Zstd, Codec::Gzip] {
            let mut out = Vec::new();
            let p = Progress::default();
            stream(codec, std::fs::File::open(&src).unwrap(), bytes.len() as u64, &mut out, &p).unwrap();
            assert_eq!(p.read.load(Ordering::Relaxed), bytes.len() as u64);
            assert_eq!(p.written.load(Ordering::Relaxed), out.len() as u64);
            assert!(out.len() < bytes.len() / 2, "{codec:?} compresses");
            let z = d.path().join(format!("z.{}", codec.name()));
            std::fs::write(&z, &out).unwrap();
            let cmd = codec.decompress().unwrap();
            let back = std::process::Command::new("sh").arg("-c").arg(format!("{cmd} < {}", z.display())).output().unwrap();
            assert!(back.status.success(), "{cmd}: {}", String::from_utf8_lossy(&back.stderr));
            assert!(back.stdout == bytes, "{cmd} gives back the file");
        }
        // Only the size asked for is sent.
        let mut out = Vec::new();
        stream(Codec::Gzip, std::fs::File::open(&src).unwrap(), 1000, &mut out, &Progress::default()).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes[..1000]);
    }

    #[test]
    fn a_codec_is_chosen_only_where_it_pays() {
        let z = Sample { ratio: 0.27, bytes_per_second: 400e6 };
        let g = Sample { ratio: 0.32, bytes_per_second: 80e6 };
        let gib = 280 << 20;
        // 100 Mbit/s: zstd, well under half the time.
        let d = choose(gib, 12.5e6, &[(Codec::Zstd, z), (Codec::Gzip, g)]);
        assert_eq!(d.codec, Codec::Zstd, "{}", d.why);
        assert!(estimate(Codec::Zstd, gib, 12.5e6, Some(z)) < 0.4 * estimate(Codec::None, gib, 12.5e6, None));
        // Only gzip on the server: gzip, under half.
        let d = choose(gib, 12.5e6, &[(Codec::Gzip, g)]);
        assert_eq!(d.codec, Codec::Gzip);
        assert!(estimate(Codec::Gzip, gib, 12.5e6, Some(g)) < 0.5 * estimate(Codec::None, gib, 12.5e6, None));
        // A local link faster than the compressor: as is.
        let d = choose(gib, 1e9, &[(Codec::Zstd, z), (Codec::Gzip, g)]);
        assert_eq!(d.codec, Codec::None, "{}", d.why);
        assert!(d.why.contains("as is"), "{}", d.why);
        assert_eq!(choose(gib, 12.5e6, &[]).why, "the server has neither zstd nor gzip");
    }
}
