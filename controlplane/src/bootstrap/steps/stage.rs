//! The stage step: every file to upload is streamed to a temp file beside
//! its destination and verified on arrival; nothing is at a final path yet.
//! Large files go a couple at a time, one per session (bandwidth-bound);
//! the small ones all in one session (latency-bound).

use std::time::{Duration, Instant};

use futures::StreamExt;
use openssh::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Exec;
use crate::bootstrap::desired::{Content, DesiredFile};
use crate::bootstrap::plan::FileChange;
use crate::local::compress::{self, Codec};
use crate::output::human_bytes;
use crate::remote::probe::TEMP_MARKER;
use crate::remote::shell_quote as q;
use crate::remote::Host;
use crate::Error;

/// Files at least this big stream PARALLEL_LARGE at a time, one per session;
/// smaller ones share one session. Three sessions at most, well under sshd's
/// default MaxSessions (10 per connection).
pub const SMALL_FILE: u64 = crate::bootstrap::plan::LARGE_FILE;
pub const PARALLEL_LARGE: usize = 2;

/// A file streamed to its temp path and verified, not yet in place.
pub struct Staged {
    pub tmp: String,
    pub index: usize,
    /// Bytes on the wire.
    pub sent: u64,
    pub secs: f64,
}

/// The server-side script that receives `files` back to back on stdin: each
/// goes to a temp file beside its destination (exactly its size, `head -c`),
/// its sha256 is checked on the server and a mismatch refused, and their
/// fsync is started (commit waits for it). With OpenSSL's hasher (SHA-NI, ~1.8
/// GB/s) a temp is hashed back from the page cache once it has arrived:
/// cheaper than `tee | hash`, whose 8 KiB pipe copies cost more than the
/// hash. With only coreutils' slower sha256sum, a large file's hash overlaps
/// its transfer instead. Temps are private (umask 077) until commit gives
/// them their mode and owner; a failure removes them.
///
/// With a `codec` (one large file per session) the stream is decompressed
/// straight into the temp (`zstd -dcq` / `gzip -dc` to the end of stdin);
/// the size and sha256 checked are the file's own, so a stream corrupted in
/// transit is refused like any other mismatch.
///
/// Each temp is created exclusively (`set -C`: never through anything at its
/// path; the names are random) before it is written. The sha256 of a
/// secret file is not on the command line (which every user of the server
/// can read in /proc, and sudo logs): the script reads those from the first
/// line of its stdin ([`secret_sums`]), in order, before the files' bytes.
pub fn stage_script(files: &[(&DesiredFile, &str)], codec: Codec) -> String {
    let temps: Vec<String> = files.iter().map(|(_, t)| q(t)).collect();
    let mut s = format!(
        "set -e\n{hash_cmd}\numask 077\ntrap 'rm -f {all}' EXIT\n\
         new() {{ set -C; : > \"$1\"; set +C; }}\n\
         recv() {{\n\
           new \"$1\"\n\
           if [ \"$2\" -lt {SMALL_FILE} ] || [ \"${{H%% *}}\" = openssl ]; then head -c \"$2\" >| \"$1\"; h=$($H < \"$1\" | cut -d' ' -f1)\n\
           else h=$(head -c \"$2\" | tee \"$1\" | $H | cut -d' ' -f1); fi\n\
           [ \"$(stat -c %s \"$1\")\" = \"$2\" ] && [ \"$h\" = \"$3\" ] || {{ echo \"$4: checksum mismatch after upload\" >&2; exit 1; }}\n\
         }}\n",
        hash_cmd = crate::remote::probe::HASH_CMD,
        all = temps.join(" "),
    );
    if files.iter().any(|(f, _)| f.spec.kind.is_secret()) {
        s.push_str("IFS= read -r sums\nset -- $sums\n");
    }
    // A secret's sum is the next word from stdin; a public one is written here.
    let sum = |f: &DesiredFile| if f.spec.kind.is_secret() { "\"$1\"".to_string() } else { f.sha256.clone() };
    let then = |f: &DesiredFile| if f.spec.kind.is_secret() { "; shift" } else { "" };
    match codec.decompress() {
        Some(d) => {
            s.push_str(&format!(
                "recvz() {{\n\
                   new \"$1\"\n\
                   {d} >| \"$1\" || {{ echo \"$4: the {name} stream did not decompress (corrupted in transit?)\" >&2; exit 1; }}\n\
                   h=$($H < \"$1\" | cut -d' ' -f1)\n\
                   [ \"$(stat -c %s \"$1\")\" = \"$2\" ] && [ \"$h\" = \"$3\" ] || {{ echo \"$4: checksum mismatch after upload\" >&2; exit 1; }}\n\
                 }}\n",
                name = codec.name()
            ));
            for (f, t) in files {
                s.push_str(&format!("recvz {} {} {} {}{}\n", q(t), f.size, sum(f), q(f.spec.dest), then(f)));
            }
        }
        None => {
            for (f, t) in files {
                s.push_str(&format!("recv {} {} {} {}{}\n", q(t), f.size, sum(f), q(f.spec.dest), then(f)));
            }
        }
    }
    // Start the fsync and let the session end: the next file streams while
    // this one is written back, and commit's fsync waits for what is left.
    s.push_str(&format!("trap - EXIT\n(sync {} </dev/null >/dev/null 2>&1 &)\n", temps.join(" ")));
    s
}

/// The first line of a session's stdin when it stages secret files: their
/// sha256 sums, in order (None when there is none).
pub fn secret_sums(files: &[&DesiredFile]) -> Option<String> {
    let sums: Vec<&str> = files.iter().filter(|f| f.spec.kind.is_secret()).map(|f| f.sha256.as_str()).collect();
    (!sums.is_empty()).then(|| format!("{}\n", sums.join(" ")))
}

/// Streams `files` to the server in one session, back to back (see
/// [`stage_script`]). One large file per session keeps a couple of streams
/// busy; all the small ones share one session, so they cost one round trip.
///
/// A single file from disk is handed to the SSH master as the session's
/// stdin, so the master reads it straight from the page cache and this
/// process stays out of the data path (as `ssh host cmd < file` does); the
/// progress bar follows the file offset the two share. Anything else is
/// written through a pipe.
///
/// Bounded by progress, not by size: a transfer that moves no byte for the
/// host's timeout is given up (a slow link may take long, a dead one not).
/// When the server refuses (a full disk, a checksum mismatch) its words are
/// the error, not the broken pipe this side sees as a consequence.
async fn stage(host: &Host, files: &[(usize, &DesiredFile)], codec: Codec, bar: Option<indicatif::ProgressBar>) -> Result<Vec<Staged>, Error> {
    let t0 = Instant::now();
    let temps: Vec<String> = files
        .iter()
        .map(|(_, f)| {
            let dest = f.spec.dest;
            let (dir, name) = dest.rsplit_once('/').unwrap_or(("", dest));
            format!("{dir}/.{name}{TEMP_MARKER}{:016x}", rand::random::<u64>())
        })
        .collect();
    let pairs: Vec<(&DesiredFile, &str)> = files.iter().zip(&temps).map(|((_, f), t)| (*f, t.as_str())).collect();
    let codec = if files.len() == 1 { codec } else { Codec::None };
    let mut cmd = host.command(&stage_script(&pairs, codec));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let s = Session { host, names: files.iter().map(|(_, f)| f.spec.dest).collect::<Vec<_>>().join(", "), stall: host.timeout.max(Duration::from_secs(5)), bar: bar.as_ref() };
    let (out, sent) = match files {
        // A secret's sum travels on stdin ahead of its bytes: never the file alone.
        [(_, f @ DesiredFile { content: Content::File(a), .. })] if codec != Codec::None && !f.spec.kind.is_secret() => s.compressed(cmd, a, f.size, codec).await?,
        [(_, f @ DesiredFile { content: Content::File(a), .. })] if !f.spec.kind.is_secret() => (s.file(cmd, a).await?, None),
        _ => (s.piped(cmd, files).await?, None),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if !out.status.success() {
        return Err(s.refused(&out));
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(files.iter().zip(temps).map(|((index, f), tmp)| Staged { tmp, index: *index, sent: sent.unwrap_or(f.size), secs }).collect())
}

/// One staging session: which server, which files (for messages), how
/// long without progress is a stall, the progress bar.
struct Session<'a> {
    host: &'a Host,
    names: String,
    stall: Duration,
    bar: Option<&'a indicatif::ProgressBar>,
}

impl Session<'_> {
    /// The server refused the upload (a full disk, a checksum): its words.
    fn refused(&self, out: &std::process::Output) -> Error {
        Error::Server(format!("{}: upload of {} failed: {}", self.host.destination, self.names, crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim())))
    }

    /// Waits for the session to end while `position` (what the bar shows,
    /// what counts as progress) moves; a stall ends the wait.
    async fn watch(
        &self,
        wait: impl std::future::Future<Output = Result<std::process::Output, openssh::Error>>,
        position: impl Fn() -> (u64, u64),
    ) -> Result<std::process::Output, Error> {
        tokio::pin!(wait);
        let (mut last_pos, mut last_move) = (0u64, Instant::now());
        loop {
            tokio::select! {
                r = &mut wait => return r.map_err(|e| self.host.lost(e)),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let (shown, pos) = position();
                    if let Some(b) = self.bar {
                        b.set_position(shown);
                    }
                    if pos != last_pos {
                        (last_pos, last_move) = (pos, Instant::now());
                    } else if last_move.elapsed() > self.stall {
                        return Err(Error::Connect(format!("{}: upload of {} made no progress for {}s (--timeout)", self.host.destination, self.names, self.stall.as_secs())));
                    }
                }
            }
        }
    }

    /// One file compressed on every core into a pipe that is the session's
    /// stdin. Returns the session's output and the bytes on the wire.
    async fn compressed(&self, mut cmd: openssh::Command<'_>, a: &crate::local::files::Asset, size: u64, codec: Codec) -> Result<(std::process::Output, Option<u64>), Error> {
        let (reader, writer) = std::io::pipe().map_err(|e| Error::local("cannot make a pipe", e))?;
        let progress = std::sync::Arc::new(compress::Progress::default());
        let child = cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(reader))).spawn().await.map_err(|e| self.host.lost(e))?;
        // The command keeps its stdin until dropped: this process must not
        // hold the pipe's read end, or a session that ends early (a server
        // that refuses the stream) leaves the compressor blocked forever
        // instead of seeing a broken pipe.
        drop(cmd);
        let compressor = tokio::task::spawn_blocking({
            let (a, progress) = (a.clone(), progress.clone());
            move || compress::stream(codec, a.reopen()?, size, writer, &progress)
        });
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let out = self.watch(child.wait_with_output(), || (load(&progress.read), load(&progress.written))).await?;
        // The server's verdict first: a compressor cut off by a refusing
        // server only saw a broken pipe.
        let compressed = match tokio::time::timeout(self.stall, compressor).await {
            Ok(r) => r.map_err(|e| Error::task("the compressor stopped", e))?,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the compressor did not finish")),
        };
        if out.status.success() {
            compressed.map_err(|e| Error::local(format!("{}: cannot read or compress it", a.path.display()), e))?;
        }
        Ok((out, Some(load(&progress.written))))
    }

    /// One file from disk handed to the SSH master as the session's stdin:
    /// the master reads it straight from the page cache and this process
    /// stays out of the data path (as `ssh host cmd < file` does); the
    /// progress bar follows the file offset the two share.
    async fn file(&self, mut cmd: openssh::Command<'_>, a: &crate::local::files::Asset) -> Result<std::process::Output, Error> {
        let file = a.reopen().map_err(|e| Error::local(a.path.display().to_string(), e))?;
        let offset = file.try_clone().map_err(|e| Error::local(a.path.display().to_string(), e))?;
        let child = cmd.stdin(Stdio::from(file)).spawn().await.map_err(|e| self.host.lost(e))?;
        self.watch(child.wait_with_output(), || {
            use std::io::Seek;
            let pos = (&offset).stream_position().unwrap_or(0);
            (pos, pos)
        })
        .await
    }

    /// Several files (or text) written through a pipe, the secrets' sums first.
    async fn piped(&self, mut cmd: openssh::Command<'_>, files: &[(usize, &DesiredFile)]) -> Result<std::process::Output, Error> {
        let mut child = cmd.stdin(Stdio::piped()).spawn().await.map_err(|e| self.host.lost(e))?;
        let mut stdin = child.stdin().take().expect("piped stdin");
        let header = secret_sums(&files.iter().map(|(_, f)| *f).collect::<Vec<_>>());
        let write = async {
            if let Some(h) = &header {
                stdin.write_all(h.as_bytes()).await?;
            }
            for (_, f) in files {
                match &f.content {
                    Content::Text(t) => stdin.write_all(t.as_bytes()).await?,
                    // Exactly the size that was hashed: a file that changed
                    // since fails the server's check instead of shifting the
                    // files after it.
                    Content::File(a) => drop(tokio::io::copy(&mut tokio::fs::File::from_std(a.reopen()?).take(f.size), &mut stdin).await?),
                }
            }
            stdin.shutdown().await?;
            drop(stdin);
            Ok::<(), std::io::Error>(())
        };
        let written = match tokio::time::timeout(self.stall * 4, write).await {
            Ok(w) => w,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no progress")),
        };
        let out = match tokio::time::timeout(self.stall, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| self.host.lost(e))?,
            Err(_) => return Err(Error::Connect(format!("{}: upload of {} got no answer for {}s (--timeout)", self.host.destination, self.names, self.stall.as_secs()))),
        };
        // A server that refused (full disk, checksum) ended the stream
        // early: its stderr says why, the broken pipe here does not.
        if !out.status.success() {
            return Err(self.refused(&out));
        }
        written.map_err(|e| self.host.lost_because(&format!("while sending {}: {e}", self.names)))?;
        Ok(out)
    }
}

/// How files travel: each large public file in a session of its own, the
/// rest together in one. Secrets always travel with the small files,
/// whatever their size: their sums go on that session's stdin, never on a
/// command line.
#[allow(clippy::type_complexity)]
pub fn sessions(files: Vec<(usize, &DesiredFile)>) -> (Vec<(usize, &DesiredFile)>, Vec<(usize, &DesiredFile)>) {
    files.into_iter().partition(|(_, f)| f.size >= SMALL_FILE && !f.spec.kind.is_secret())
}

/// Removes staged temps that will not be committed (another upload failed).
async fn discard(host: &Host, staged: &[Staged]) {
    if staged.is_empty() {
        return;
    }
    let temps: Vec<String> = staged.iter().map(|s| q(&s.tmp)).collect();
    let _ = host.sh(&format!("rm -f {}", temps.join(" "))).await;
}

pub async fn run(x: &mut Exec<'_>, changes: &[FileChange], codec: Codec) -> Result<(), Error> {
    let (host, desired, ui) = (x.host, x.desired, x.ui);
    let multi = ui.tty.then(indicatif::MultiProgress::new);
    let mut files: Vec<(usize, &DesiredFile)> = changes.iter().map(|c| (c.index, &desired.files[c.index])).collect();
    // Largest first, so the parallel streams end together.
    files.sort_by_key(|(_, f)| std::cmp::Reverse(f.size));
    let (large, small) = sessions(files);
    let line = |index: usize| changes.iter().find(|c| c.index == index).map(FileChange::line).unwrap_or_default();
    let large = futures::stream::iter(large.into_iter().map(|(index, f)| {
        let bar = multi.as_ref().and_then(|m| ui.bar(f.size, f.spec.dest).map(|b| m.add(b)));
        let line = &line;
        async move {
            let r = stage(host, &[(index, f)], codec, bar).await;
            if let Ok(s) = &r {
                let wire = if codec == Codec::None { String::new() } else { format!(", {} {} on the wire", human_bytes(s[0].sent), codec.name()) };
                ui.step(&format!("upload   {} in {:.1}s ({}/s{wire})", line(index), s[0].secs, human_bytes((f.size as f64 / s[0].secs.max(1e-3)) as u64)));
            }
            r
        }
    }))
    .buffer_unordered(x.lanes.max(1))
    .collect::<Vec<Result<Vec<Staged>, Error>>>();
    let small = async {
        if small.is_empty() {
            return Ok(Vec::new());
        }
        let r = stage(host, &small, Codec::None, None).await;
        if let Ok(s) = &r {
            let bytes: u64 = s.iter().map(|x| x.sent).sum();
            ui.step(&format!("upload   {} small file(s), {}, in one session in {:.1}s", s.len(), human_bytes(bytes), s.first().map(|x| x.secs).unwrap_or(0.0)));
            for st in s {
                ui.detail(&line(st.index));
            }
        }
        r
    };
    let (l, m) = futures::join!(large, small);
    // Any failure: the temps the other sessions staged go too.
    let mut staged: Vec<Staged> = Vec::new();
    let mut failed: Option<Error> = None;
    for r in l.into_iter().chain(std::iter::once(m)) {
        match r {
            Ok(v) => staged.extend(v),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        discard(host, &staged).await;
        return Err(e);
    }
    staged.sort_by_key(|s| s.index);
    if codec != Codec::None && staged.iter().any(|s| desired.files[s.index].size >= SMALL_FILE) {
        x.outcome.compression = codec;
    }
    x.staged = staged;
    Ok(())
}
