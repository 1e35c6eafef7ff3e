//! The layout's files and directories as the server has them: type (from
//! the mode bits, `stat %f`: never a localized word), mode, owner, size; the
//! texts of units and configs; sha256 sums, from the server's hash cache
//! where a file's stamp is unchanged; binaries' versions; fingerprints to
//! compare across servers (secrets under a keyed HMAC whose key arrives on
//! stdin). The hash cache's line format is written here and only here.

use serde::Serialize;

use super::{b64_text, list, malformed, Probe, ProbeError, Reading, Request, Tag};
use crate::model::{FileKind, FileMode, DIRECTORIES, FILES, STATE_DIR, UNITS};
use crate::remote::shell_quote as q;

pub(crate) const TAGS: &[Tag] = &[Tag::Stat, Tag::Dir, Tag::Text, Tag::Hit, Tag::Sum, Tag::Version, Tag::Fingerprint, Tag::FingerprintHit, Tag::FingerprintSum, Tag::Elf];

/// How long a binary's `--version` may run on the server (an emulated
/// apiserver under qemu-user takes seconds to start).
pub const SERVER_VERSION_TIMEOUT: u32 = 30;

use crate::model::version::GIT_VERSION_MARK;

/// Sets `$H` to the server's fastest sha256 command: OpenSSL's (SHA-NI where
/// the CPU has it) when installed, else coreutils' sha256sum. Both print the
/// hash as the first word.
pub const HASH_CMD: &str = "if command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; else H=sha256sum; fi";

/// `stat -c` format of a file's stamp: device, inode, size, mtime and ctime
/// in ns. Any write moves ctime, which nobody can set back.
pub const STAMP_FMT: &str = "%d:%i:%s:%.9Y:%.9Z";

/// What a file is, from its mode's type bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FileType {
    #[default]
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.words())
    }
}

impl FileType {
    /// From `stat -c %f` (the raw mode in hex).
    pub fn from_raw_mode(hex: &str) -> Option<FileType> {
        let m = u32::from_str_radix(hex, 16).ok()?;
        Some(match m & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            _ => FileType::Unknown,
        })
    }
    /// In words, with an article: `a directory`, `a symbolic link`.
    pub fn words(self) -> &'static str {
        match self {
            FileType::Regular => "a regular file",
            FileType::Directory => "a directory",
            FileType::Symlink => "a symbolic link",
            FileType::Fifo => "a FIFO",
            FileType::Socket => "a socket",
            FileType::CharDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Unknown => "a file of an unknown type",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RemoteFile {
    pub mode: FileMode,
    pub owner: String,
    pub group: String,
    pub size: u64,
    /// Not following links: a symlink at a destination is a symlink.
    pub kind: FileType,
    /// Empty unless a regular file and hashes were asked for.
    pub sha256: String,
    /// Last modified, nanoseconds since the epoch by the server's clock
    /// (from the stamp; 0 where unknown).
    pub mtime_ns: u64,
}

impl RemoteFile {
    pub fn is_regular(&self) -> bool {
        self.kind == FileType::Regular
    }
    /// `owner:group`.
    pub fn owners(&self) -> String {
        format!("{}:{}", self.owner, self.group)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteDir {
    pub mode: FileMode,
    pub owner: String,
    pub group: String,
    /// Not following links: `Directory` unless something else sits there.
    pub kind: FileType,
}

/// bootstrap's record of the files it placed, root's alone (0600) in its
/// state directory, rewritten under the lock: [`CacheLine`]s.
pub fn hash_cache() -> String {
    format!("{STATE_DIR}/hashes")
}

/// One line of the hash cache. A file whose stamp ([`STAMP_FMT`]) is
/// unchanged is not hashed again; a binary's `--version` is known by its
/// content's hash. The awk and shell below read and write exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLine {
    /// `file STAMP SHA256 PATH`
    File { stamp: String, sha256: String, path: String },
    /// `version SHA256 LINE…`
    Version { sha256: String, line: String },
}

const FILE_WORD: &str = "file";
const VERSION_WORD: &str = "version";

impl std::fmt::Display for CacheLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLine::File { stamp, sha256, path } => write!(f, "{FILE_WORD} {stamp} {sha256} {path}"),
            CacheLine::Version { sha256, line } => write!(f, "{VERSION_WORD} {sha256} {line}"),
        }
    }
}

impl std::str::FromStr for CacheLine {
    type Err = ();
    fn from_str(s: &str) -> Result<CacheLine, ()> {
        let (word, rest) = s.split_once(' ').ok_or(())?;
        match word {
            FILE_WORD => {
                let w: Vec<&str> = rest.split(' ').collect();
                match w.as_slice() {
                    [stamp, sha, path] if is_sha256(sha) => Ok(CacheLine::File { stamp: stamp.to_string(), sha256: sha.to_string(), path: path.to_string() }),
                    _ => Err(()),
                }
            }
            VERSION_WORD => match rest.split_once(' ') {
                Some((sha, line)) if is_sha256(sha) => Ok(CacheLine::Version { sha256: sha.to_string(), line: line.to_string() }),
                _ => Err(()),
            },
            _ => Err(()),
        }
    }
}

/// 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A shell test that holds when `dir` is bootstrap's own to write in:
/// a directory, not a link, root's, 0700 (before the plan has corrected it,
/// nothing is written there).
pub fn trusted_dir(dir: &str) -> String {
    format!("{{ [ -d {d} ] && [ ! -L {d} ] && [ \"$(stat -c %u:%a {d})\" = 0:700 ]; }}", d = q(dir))
}

/// Sets `$C` to the hash cache if it may be trusted (in a trusted state
/// directory, a regular file, not a link, root's, 0600), else /dev/null.
fn trusted_cache() -> String {
    format!(
        "C={c}; if {dir} && [ -f \"$C\" ] && [ ! -L \"$C\" ] && [ \"$(stat -c %u:%a \"$C\")\" = 0:600 ]; then :; else C=/dev/null; fi\n",
        c = q(&hash_cache()),
        dir = trusted_dir(STATE_DIR)
    )
}

/// Shell that enters the placed public file `dest` in the hash cache under
/// the stamp it has now (a `file` line): appended when the cache is
/// trusted, else the cache is written anew (mktemp, rename). Best effort.
pub fn cache_entry(dest: &str, sha256: &str) -> String {
    format!("echo \"{FILE_WORD} $(stat -c '{STAMP_FMT}' {d}) {sha256} \"{d}", d = q(dest))
}

/// A `version` line for the hash cache (None if the line could not be
/// written into it: control characters).
pub fn cache_version(sha256: &str, line: &str) -> Option<String> {
    (unitfile::control_char(line).is_none() && is_sha256(sha256)).then(|| format!("echo {}", q(&CacheLine::Version { sha256: sha256.into(), line: line.into() }.to_string())))
}

/// Wraps `lines` (shell printing cache lines) to add them to the cache:
/// appended to a trusted cache, else written as a new one through mktemp.
pub fn cache_append(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "if {dir}; then {cache}\n\
           if [ \"$C\" != /dev/null ]; then {{ {body} ; }} >> \"$C\" || true\n\
           elif t=$(mktemp {tmp}); then {{ {body} ; }} > \"$t\" && mv -fT \"$t\" {c} || rm -f \"$t\"; fi\n\
         fi\n",
        dir = trusted_dir(STATE_DIR),
        body = lines.join("; "),
        cache = trusted_cache().trim_end(),
        tmp = q(&format!("{STATE_DIR}/.hashes.XXXXXXXXXX")),
        c = q(&hash_cache()),
    )
}

/// Sums of the layout's files from `$st` (the `stat` lines): public
/// regular files from the cache `$C` where their stamp is unchanged
/// (`hit<TAB>STAMP<TAB>SHA<TAB>PATH`), the others hashed (`TAG<TAB>SHA PATH`),
/// secrets always hashed (one `sha256sum`: they are small), never entered.
/// Leaves `$res` (the hit and miss lines) and `$new` (the hasher's lines)
/// for a cache writer.
fn sums(tag: Tag, hit: Tag, public: &[&str], secret: &[&str]) -> String {
    format!(
        "res=$(printf '%s\\n' \"$st\" | awk -F\"$T\" -v T=\"$T\" -v C=\"$C\" -v pub={public} 'BEGIN {{ n = split(pub, P, \" \"); for (i = 1; i <= n; i++) W[P[i]] = 1; while ((getline l < C) > 0) {{ k = split(l, a, \" \"); if (k == 4 && a[1] == \"{FILE_WORD}\" && length(a[3]) == 64) c[a[2] \" \" a[4]] = a[3] }} }} $1 == \"stat\" && ($2 in W) && $3 ~ /^8...$/ {{ k = $8 \" \" $2; if (k in c) print \"hit\" T $8 T c[k] T $2; else print \"miss\" T $8 T $2 }}')\n\
         printf '%s\\n' \"$res\" | while IFS=\"$T\" read -r w a b c; do [ \"$w\" = hit ] && echo \"{hit}${{T}}$a${{T}}$b${{T}}$c\"; done\n\
         new=\n\
         case \"$res\" in *miss*) new=$(printf '%s\\n' \"$res\" | awk -F\"$T\" '$1 == \"miss\" {{ print $3 }}' | xargs -d '\\n' -r -P 4 -n 1 $H) ;; esac\n\
         sec=; for f in {secret}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && sec=\"$sec $f\"; done\n\
         [ -n \"$sec\" ] && new=\"$new\n$(sha256sum -- $sec)\"\n\
         printf '%s\\n' \"$new\" | while IFS= read -r l; do [ -n \"$l\" ] && printf '{tag}\\t%s\\n' \"$l\"; done\n",
        public = q(&public.join(" ")),
        secret = list(secret),
    )
}

/// `hm FILE`: HMAC-SHA256 of FILE under the key whose pads ([`HmacKey::pads`],
/// octal escapes) arrive on stdin. Only builtins and pipes see them: nothing
/// on a command line, which every user of the server can read in /proc.
/// The inner digest goes back to bytes through awk on a pipe (no `basenc`,
/// which older coreutils lack).
pub const HMAC_SH: &str = "read -r IP; read -r OP\n\
    hm() { i=$( { printf \"$IP\"; cat -- \"$1\"; } | sha256sum | cut -c1-64 | awk '{ h = \"0123456789abcdef\"; s = \"\"; for (i = 1; i <= 64; i += 2) s = s sprintf(\"\\\\%03o\", (index(h, substr($0, i, 1)) - 1) * 16 + index(h, substr($0, i + 1, 1)) - 1); print s }' ); \
    { printf \"$OP\"; printf \"$i\"; } | sha256sum | cut -c1-64; }\n";

/// A random per-run HMAC key. Its Debug says nothing.
#[derive(Clone)]
pub struct HmacKey([u8; 64]);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    pub fn random() -> HmacKey {
        HmacKey(rand::random())
    }
    /// The key XOR the HMAC inner and outer pads (block size 64: the key is
    /// exactly a block), as printf's octal escapes, one per line: the
    /// script's stdin.
    pub fn pads(&self) -> String {
        let oct = |pad: u8| self.0.iter().map(|b| format!("\\{:03o}", b ^ pad)).collect::<String>();
        format!("{}\n{}\n", oct(0x36), oct(0x5c))
    }
    /// HMAC-SHA256 of `data` under this key, as the server computes it.
    #[cfg(test)]
    pub fn hmac(&self, data: &[u8]) -> String {
        use sha2::Digest;
        let pad = |p: u8| self.0.iter().map(|b| b ^ p).collect::<Vec<u8>>();
        let inner = sha2::Sha256::new().chain_update(pad(0x36)).chain_update(data).finalize();
        let outer = sha2::Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
        outer.iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub(crate) fn script(req: &Request) -> String {
    let layout: Vec<&str> = if req.layout { FILES.iter().map(|f| f.dest).collect() } else { Vec::new() };
    let files: Vec<&str> = layout.into_iter().chain(req.paths.iter().map(String::as_str)).collect();
    if files.is_empty() {
        return String::new();
    }
    let mut s =
        format!("st=$(stat -c \"stat${{T}}%n${{T}}%f${{T}}%a${{T}}%U${{T}}%G${{T}}%s${{T}}{STAMP_FMT}\" -- {files} 2>/dev/null)\nprintf '%s\\n' \"$st\"\n", files = list(&files));
    if req.layout {
        let texts: Vec<&str> = FILES.iter().filter(|f| matches!(f.kind, FileKind::Unit | FileKind::Config)).map(|f| f.dest).collect();
        let bins: Vec<&str> = FILES.iter().filter(|f| f.kind == FileKind::Binary).map(|f| f.dest).collect();
        let dirs: Vec<&str> = DIRECTORIES.iter().map(|d| d.path).collect();
        s.push_str(&format!(
            "for f in {texts}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"text${{T}}$f${{T}}$(base64 -w0 \"$f\")\"; done\n\
             for f in {bins}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"elf${{T}}$f${{T}}$(head -c 20 \"$f\" | od -An -v -tx1 | tr -d ' \\n')\"; done\n\
             stat -c \"dir${{T}}%n${{T}}%f${{T}}%a${{T}}%U${{T}}%G\" -- {dirs} 2>/dev/null\n",
            texts = list(&texts),
            bins = list(&bins),
            dirs = list(&dirs),
        ));
    }
    if req.hashes || req.versions || req.fingerprints.is_some() {
        s.push_str(&trusted_cache());
    }
    if req.hashes {
        let public: Vec<&str> = FILES.iter().filter(|f| !f.kind.is_secret()).map(|f| f.dest).collect();
        let secret: Vec<&str> = FILES.iter().filter(|f| f.kind.is_secret()).map(|f| f.dest).collect();
        s.push_str(&sums(Tag::Sum, Tag::Hit, &public, &secret));
        if req.write_cache {
            // Only when something was hashed (or there was no cache to
            // trust), and only in a state directory that is root's alone: the
            // hits, and the public files hashed now, each under the stamp it
            // had before hashing (a file changed meanwhile has a newer ctime
            // and never matches that entry); version lines kept. Written to a
            // fresh mktemp file, then renamed over the cache: never through
            // anything planted at its path.
            s.push_str(&format!(
                "case \"$res\" in *miss*) if {dir} && t=$(mktemp {tmp}); then\n\
                   {{ {{ printf '%s\\n' \"$res\" | awk -F\"$T\" '$1 == \"hit\" {{ print \"{FILE_WORD}\", $2, $3, $4 }} $1 == \"miss\" {{ print \"miss\", $2, $3 }}'; printf '%s\\n' \"$new\" | sed 's/^/sum /'; }} | awk '$1 == \"{FILE_WORD}\" {{ print; next }} $1 == \"miss\" {{ s[$3] = $2; next }} $1 == \"sum\" {{ p = $3; sub(/^\\*/, \"\", p); if (p in s) print \"{FILE_WORD}\", s[p], $2, p }}'; grep '^{VERSION_WORD} ' \"$C\" 2>/dev/null; }} > \"$t\" && mv -fT \"$t\" {cache} || rm -f \"$t\"\n\
                 fi ;; esac\n",
                dir = trusted_dir(STATE_DIR),
                tmp = q(&format!("{STATE_DIR}/.hashes.XXXXXXXXXX")),
                cache = q(&hash_cache()),
            ));
        }
    }
    if req.versions {
        // The version bootstrap recorded for this very file (by its stamp),
        // else the binary's own answer (in the background).
        let pairs: Vec<String> = UNITS.iter().map(|u| format!("{} {}", u.exec, u.file_name)).collect();
        s.push_str(&format!(
            "vs=$(printf '%s\\n' \"$st\" | awk -F\"$T\" -v T=\"$T\" -v C=\"$C\" -v want={want} 'BEGIN {{ n = split(want, W, \" \"); for (i = 1; i < n; i += 2) U[W[i]] = W[i + 1]; while ((getline l < C) > 0) {{ split(l, a, \" \"); if (a[1] == \"{FILE_WORD}\") F[a[2] \" \" a[4]] = a[3]; else if (a[1] == \"{VERSION_WORD}\") {{ v = l; sub(/^{VERSION_WORD} [0-9a-f]+ /, \"\", v); V[a[2]] = v }} }} }} $1 == \"stat\" && ($2 in U) {{ k = $8 \" \" $2; if ((k in F) && (F[k] in V)) print \"known\" T U[$2] T V[F[k]]; else print \"ask\" T U[$2] T $2 }}')\n\
             printf '%s\\n' \"$vs\" | {{ n=0; while IFS=\"$T\" read -r what unit v; do n=$((n + 1)); case \"$what\" in known) echo \"version${{T}}$unit${{T}}$(printf '%s' \"$v\" | base64 -w0)\" ;; ask) [ -f \"$v\" ] && [ -x \"$v\" ] && {ask} ;; esac; done; wait; }}\n",
            ask = super::background(
                "version-$n",
                &format!("l=$(grep -a -o -m 1 '{GIT_VERSION_MARK}[0-9][0-9A-Za-z.+_-]*' \"$v\" | head -n 1); if [ -n \"$l\" ]; then l=\"Kubernetes v${{l#{GIT_VERSION_MARK}}}\"; else l=$(timeout {SERVER_VERSION_TIMEOUT} \"$v\" --version 2>/dev/null | head -n 1); fi; echo \"version${{T}}$unit${{T}}$(printf '%s' \"$l\" | base64 -w0)\""),
            )
            .trim_end(),
            want = q(&pairs.join(" ")),
        ));
    }
    if req.fingerprints.is_some() {
        let secret: Vec<&str> = FILES.iter().filter(|f| f.kind.is_secret()).map(|f| f.dest).collect();
        let public: Vec<&str> = FILES.iter().filter(|f| !f.kind.is_secret()).map(|f| f.dest).collect();
        s.push_str(HMAC_SH);
        s.push_str(&format!("for f in {secret}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"fp${{T}}$f${{T}}hmac:$(hm \"$f\")\"; done\n", secret = list(&secret)));
        s.push_str(&sums(Tag::FingerprintSum, Tag::FingerprintHit, &public, &[]));
    }
    s
}

/// A path the request could have asked for: absolute, without control
/// characters (what the layout and the installed units name).
fn path(tag: Tag, s: &str) -> Result<String, ProbeError> {
    if !s.starts_with('/') || unitfile::control_char(s).is_some() {
        return Err(malformed(tag, "not an absolute path"));
    }
    Ok(s.to_string())
}

/// A user or group name as `stat` gives it (no control characters, no spaces).
fn name(tag: Tag, s: &str) -> Result<String, ProbeError> {
    if s.is_empty() || s.len() > 64 || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(malformed(tag, "not a user or group name"));
    }
    Ok(s.to_string())
}

fn mode(tag: Tag, s: &str) -> Result<FileMode, ProbeError> {
    FileMode::from_octal(s).ok_or_else(|| malformed(tag, "not a mode"))
}

fn kind(tag: Tag, s: &str) -> Result<FileType, ProbeError> {
    FileType::from_raw_mode(s).ok_or_else(|| malformed(tag, "not a raw mode"))
}

/// `SHA  PATH` (sha256sum) or `SHA *PATH` (openssl -r).
fn sum_line(tag: Tag, s: &str) -> Result<(String, String), ProbeError> {
    let (sha, rest) = s.split_once(' ').ok_or_else(|| malformed(tag, "not `SHA PATH`"))?;
    if !is_sha256(sha) {
        return Err(malformed(tag, "not a sha256"));
    }
    Ok((sha.to_string(), path(tag, rest.trim_start_matches(' ').trim_start_matches('*'))?))
}

/// The mtime of a [`STAMP_FMT`] stamp (`dev:ino:size:SECONDS.NANOS:ctime`),
/// in nanoseconds.
fn stamp_mtime(stamp: &str) -> Option<u64> {
    let m = stamp.split(':').nth(3)?;
    let (secs, nanos) = m.split_once('.').unwrap_or((m, "0"));
    let nanos = format!("{nanos:0<9}");
    secs.parse::<u64>().ok()?.checked_mul(1_000_000_000)?.checked_add(nanos.get(..9)?.parse::<u64>().ok()?)
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe, r: &mut Reading) -> Result<(), ProbeError> {
    match (tag, f) {
        (Tag::Stat, [file, raw, m, owner, group, size, stamp]) => {
            let file = path(tag, file)?;
            let rf = RemoteFile {
                mode: mode(tag, m)?,
                owner: name(tag, owner)?,
                group: name(tag, group)?,
                size: size.parse().map_err(|_| malformed(tag, "not a size"))?,
                kind: kind(tag, raw)?,
                sha256: String::new(),
                mtime_ns: stamp_mtime(stamp).ok_or_else(|| malformed(tag, "not a stamp"))?,
            };
            p.files.insert(file, rf);
        }
        (Tag::Dir, [dir, raw, m, owner, group]) => {
            let d = RemoteDir { mode: mode(tag, m)?, owner: name(tag, owner)?, group: name(tag, group)?, kind: kind(tag, raw)? };
            p.dirs.insert(path(tag, dir)?, d);
        }
        (Tag::Text, [file, b]) => {
            p.texts.insert(path(tag, file)?, b64_text(tag, b)?);
        }
        (Tag::Hit, [_stamp, sha, file]) => {
            if !is_sha256(sha) {
                return Err(malformed(tag, "not a sha256"));
            }
            r.sums.insert(path(tag, file)?, sha.to_string());
        }
        (Tag::Sum, [line]) => {
            let (sha, file) = sum_line(tag, line)?;
            r.sums.insert(file, sha);
        }
        (Tag::Version, [unit, b]) => {
            let u = UNITS.iter().find(|u| u.file_name == *unit).ok_or_else(|| malformed(tag, "not a unit of the layout"))?;
            let v = b64_text(tag, b)?;
            let v = v.lines().next().unwrap_or("").trim();
            p.units.entry(u.file_name.to_string()).or_default().binary_version = Some(crate::output::redact::line(&v.chars().take(120).collect::<String>()));
        }
        (Tag::Fingerprint, [file, v]) => {
            let hex = v.strip_prefix("hmac:").filter(|h| is_sha256(h)).ok_or_else(|| malformed(tag, "not hmac:HEX"))?;
            p.fingerprints.insert(path(tag, file)?, format!("hmac:{hex}"));
        }
        (Tag::FingerprintHit, [_stamp, sha, file]) => {
            if !is_sha256(sha) {
                return Err(malformed(tag, "not a sha256"));
            }
            p.fingerprints.insert(path(tag, file)?, format!("sha256:{sha}"));
        }
        (Tag::Elf, [file, hex]) => {
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| malformed(tag, "not hex"))?;
            if bytes.len() > 20 || hex.len() % 2 != 0 {
                return Err(malformed(tag, "not the first 20 bytes in hex"));
            }
            p.heads.insert(path(tag, file)?, bytes);
        }
        (Tag::FingerprintSum, [line]) => {
            let (sha, file) = sum_line(tag, line)?;
            p.fingerprints.insert(file, format!("sha256:{sha}"));
        }
        (t, f) => return Err(malformed(t, format!("{} fields", f.len()))),
    }
    Ok(())
}

/// Gives each file the sum read for it.
pub(crate) fn finish(p: &mut Probe, mut r: Reading) {
    for (path, file) in p.files.iter_mut() {
        if let Some(s) = r.sums.remove(path) {
            file.sha256 = s;
        }
    }
}
