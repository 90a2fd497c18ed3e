//! A directory as one reproducible gzip layer, and a cache that knows a directory's layer
//! without rebuilding it.
//!
//! Reproducible: the same files give the same bytes, so the same layer digest and, with the
//! same base, the same manifest digest. Entries are sorted by path; every entry has the same
//! modification time (`SOURCE_DATE_EPOCH`, else 0), uid and gid 0 and no user or group
//! names; only the permission bits, the type, the size, the content and a symlink's target
//! come from the file system. The directory itself is not an entry: its contents land at the
//! image's root.
//!
//! Fast: the tar stream is cut at fixed offsets into [`MEMBER_SIZE`] pieces, each compressed
//! as its own gzip member on every core, and the members are concatenated in order (a
//! multi-member gzip file is one gzip stream to every reader: Go's `compress/gzip`, which
//! containerd and skopeo use, GNU gzip, zlib's `gzread`). A piece that does not compress
//! (binaries that are compressed already, media) is stored rather than deflated. The cut
//! points and that choice depend only on the content, never on the number of threads, so the
//! bytes stay the same on every machine. Both digests are computed on the way: `diff_id`
//! over the tar, `digest` over the gzip.
//!
//! Nothing outside the directory is read: a symlink is stored as a symlink with its target
//! as written, never dereferenced (one pointing at `/etc` or `../../secrets` is, in the image,
//! a link into the image's own tree), and a regular file is read only if the file opened is
//! the one listed (same inode and device), so one swapped for a symlink after the listing is
//! refused. The digests are Ferry's own hashes of the bytes it writes; no digest is taken from
//! the registry or the base image for the new layer.
//!
//! The cache maps a fingerprint of the directory (each entry's path, type, mode, size,
//! mtime, ctime, inode and device, plus the layer settings) to the layer's digests, in a small
//! file under the cache directory. A change of content changes size, mtime or ctime (ctime
//! cannot be set back by any tool), a replaced file changes the inode; so a hit means the same
//! content, as git's index assumes. To stay safe when a file is written in the same clock
//! tick as the fingerprint is taken, a fingerprint is stored only when every entry's times are
//! older than [`SETTLE`] at the start and the directory did not change while it was read.

use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

/// Uncompressed bytes per gzip member. Large enough that the lost context (32 KiB window) and
/// the 18 bytes of each member's header and trailer cost nothing measurable, small enough to
/// keep every core busy and the memory in flight to a few MiB.
pub const MEMBER_SIZE: usize = 1 << 20;

/// How old every entry's times must be for its fingerprint to be cached: far above the
/// coarsest file-system clock tick (10 ms at HZ=100), so that a write after the fingerprint
/// always shows as a newer ctime.
pub const SETTLE: Duration = Duration::from_millis(100);

/// The layout version of the tar and gzip bytes; part of the fingerprint, so a change of how
/// layers are written invalidates every cached digest.
const FORMAT: &str = "ferry-layer-v1";

/// How a layer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Every entry's modification time, in seconds since the epoch.
    pub mtime: u64,
    /// The gzip level, 1 (fastest) to 9.
    pub level: u32,
}

impl Default for Settings {
    fn default() -> Self {
        // Level 1: on a build's output (binaries, assets that are often compressed already)
        // higher levels gain a few percent of size for several times the CPU.
        Self { mtime: 0, level: 1 }
    }
}

/// A layer's identity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// `sha256:` of the compressed bytes: the blob's name in the registry.
    pub digest: String,
    /// `sha256:` of the uncompressed tar: the image config's `rootfs.diff_ids` entry.
    pub diff_id: String,
    /// The compressed size in bytes.
    pub size: u64,
}

/// Why a directory could not become a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("the output directory {0} does not exist")]
    Missing(PathBuf),
    #[error("the output {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path}: {kind} files cannot go into an image layer")]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("{0} changed while it was being read")]
    Changed(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the layer to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// One entry of the directory, in layer order.
#[derive(Debug)]
struct Entry {
    /// The path relative to the directory.
    relative: PathBuf,
    meta: Metadata,
    /// A symlink's target.
    target: Option<PathBuf>,
}

/// A directory's entries as seen at one moment, sorted by path.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    entries: Vec<Entry>,
    /// When the scan started.
    started: SystemTime,
}

impl Tree {
    /// Lists `root` recursively (symlinks are entries, not followed).
    pub fn scan(root: &Path) -> Result<Self, LayerError> {
        let started = SystemTime::now();
        let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => LayerError::Missing(root.to_owned()),
            _ => LayerError::Read {
                path: root.to_owned(),
                source: e,
            },
        })?;
        if !meta.is_dir() {
            return Err(LayerError::NotADirectory(root.to_owned()));
        }
        let mut entries = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(dir) = pending.pop() {
            let full = root.join(&dir);
            let read = |e| LayerError::Read {
                path: full.clone(),
                source: e,
            };
            for item in std::fs::read_dir(&full).map_err(read)? {
                let item = item.map_err(read)?;
                let relative = dir.join(item.file_name());
                let path = root.join(&relative);
                // Relative to the open directory (fstatat), cheaper than resolving `path`; like
                // symlink_metadata, it does not follow a symlink.
                let meta = item.metadata().map_err(|e| LayerError::Read {
                    path: path.clone(),
                    source: e,
                })?;
                let kind = meta.file_type();
                let target = if kind.is_symlink() {
                    Some(std::fs::read_link(&path).map_err(|e| LayerError::Read {
                        path: path.clone(),
                        source: e,
                    })?)
                } else if kind.is_dir() {
                    pending.push(relative.clone());
                    None
                } else if kind.is_file() {
                    None
                } else {
                    return Err(LayerError::Unsupported {
                        path,
                        kind: "special (socket, fifo or device)",
                    });
                };
                entries.push(Entry {
                    relative,
                    meta,
                    target,
                });
            }
        }
        // Byte order of the whole path: deterministic, and a directory still comes before
        // everything under it.
        entries.sort_by(|a, b| {
            a.relative
                .as_os_str()
                .as_bytes()
                .cmp(b.relative.as_os_str().as_bytes())
        });
        Ok(Self {
            root: root.to_owned(),
            entries,
            started,
        })
    }

    /// A digest of everything that identifies the directory's content and how it is written.
    pub fn fingerprint(&self, settings: Settings) -> String {
        let mut hash = Sha256::new();
        hash.update(FORMAT.as_bytes());
        hash.update(settings.mtime.to_le_bytes());
        hash.update(settings.level.to_le_bytes());
        hash.update((MEMBER_SIZE as u64).to_le_bytes());
        for entry in &self.entries {
            let path = entry.relative.as_os_str().as_bytes();
            hash.update((path.len() as u64).to_le_bytes());
            hash.update(path);
            let m = &entry.meta;
            for number in [
                u64::from(m.mode()),
                m.size(),
                m.mtime() as u64,
                m.mtime_nsec() as u64,
                m.ctime() as u64,
                m.ctime_nsec() as u64,
                m.ino(),
                m.dev(),
            ] {
                hash.update(number.to_le_bytes());
            }
            if let Some(target) = &entry.target {
                let target = target.as_os_str().as_bytes();
                hash.update((target.len() as u64).to_le_bytes());
                hash.update(target);
            }
        }
        hex::encode(hash.finalize())
    }

    /// Whether every entry was last changed well before the scan (see [`SETTLE`]).
    fn settled(&self) -> bool {
        let Ok(start) = self.started.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = start.saturating_sub(SETTLE);
        self.entries.iter().all(|entry| {
            let m = &entry.meta;
            let time = |secs: i64, nanos: i64| {
                Duration::new(
                    u64::try_from(secs).unwrap_or(0),
                    u32::try_from(nanos).unwrap_or(0),
                )
            };
            time(m.mtime(), m.mtime_nsec()) < limit && time(m.ctime(), m.ctime_nsec()) < limit
        })
    }
}

/// Compressed layers up to this size stay in memory: writing them to a file and reading them
/// back for the upload costs two copies of every byte. Bigger ones go to a temporary file.
pub const MEMORY_LIMIT: u64 = 256 << 20;

/// A compressed layer's bytes, until they are uploaded.
#[derive(Debug)]
pub enum Compressed {
    /// The gzip members, in order.
    Memory(Vec<bytes::Bytes>),
    /// A temporary file, deleted when dropped.
    File(TempFile),
}

impl Compressed {
    /// All the bytes at once (tests, the benchmark).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        match self {
            Compressed::Memory(parts) => Ok(parts.concat()),
            Compressed::File(file) => std::fs::read(file.path()),
        }
    }
}

/// A file that is deleted when dropped.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn create(dir: &Path) -> io::Result<(Self, File)> {
        loop {
            let path = dir.join(format!(
                "ferry-layer-{}-{:016x}.tar.gz",
                std::process::id(),
                fastrand::u64(..)
            ));
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((Self { path }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `tree` as a layer, in memory or (past [`MEMORY_LIMIT`]) in a file under `dir`.
pub fn build(
    tree: &Tree,
    settings: Settings,
    dir: &Path,
) -> Result<(Layer, Compressed), LayerError> {
    build_within(tree, settings, dir, MEMORY_LIMIT)
}

fn build_within(
    tree: &Tree,
    settings: Settings,
    dir: &Path,
    memory_limit: u64,
) -> Result<(Layer, Compressed), LayerError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let level = Compression::new(settings.level.clamp(1, 9));

    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(2 * workers);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, io::Result<Vec<u8>>)>();

    let (produced, written) = std::thread::scope(|scope| {
        for _ in 0..workers {
            let jobs = Arc::clone(&jobs_rx);
            let done = done_tx.clone();
            scope.spawn(move || {
                loop {
                    // A poisoned lock only means another worker panicked; the queue is fine.
                    let job = match jobs.lock() {
                        Ok(rx) => rx.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok((index, chunk)) = job else { return };
                    if done.send((index, compress(&chunk, level))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let producer = scope.spawn(move || write_tar(tree, settings, jobs_tx));
        let written = write_members(done_rx, dir, memory_limit);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(LayerError::Changed(tree.root.clone())));
        (produced, written)
    });
    // The writer's error explains a producer that stopped because the pipe closed.
    let (digest, size, bytes) = written?;
    let diff_id = produced?;
    Ok((
        Layer {
            digest,
            diff_id,
            size,
        },
        bytes,
    ))
}

/// One gzip member with a fixed header (no name, mtime 0, OS "unknown"). A piece that does
/// not compress is stored instead: deflate at level 1 runs at a tenth of the speed on random
/// bytes and even grows them by ~5%, while a stored block costs a CRC. Which pieces are stored
/// is decided from the content alone (see [`compressible`]), so the bytes stay reproducible.
fn compress(chunk: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let level = if compressible(chunk, level) {
        level
    } else {
        Compression::none()
    };
    gzip(chunk, level)
}

fn gzip(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() + 64), level);
    encoder.write_all(data)?;
    encoder.finish()
}

/// Whether deflate gains at least 5% on four 16 KiB samples spread over `chunk` (6% of the
/// work of compressing it): already-compressed files, media and random data are stored.
fn compressible(chunk: &[u8], level: Compression) -> bool {
    const SAMPLE: usize = 16 << 10;
    if chunk.len() < 4 * SAMPLE {
        return true;
    }
    let (mut raw, mut packed) = (0usize, 0usize);
    for i in 0..4 {
        let start = i * (chunk.len() - SAMPLE) / 3;
        let sample = &chunk[start..start + SAMPLE];
        raw += sample.len();
        // An error here only means "compress it for real".
        packed += gzip(sample, level).map_or(0, |z| z.len());
    }
    packed * 100 < raw * 95
}

/// Writes the tar stream of `tree` into fixed-size chunks sent to `jobs`; returns its digest.
fn write_tar(
    tree: &Tree,
    settings: Settings,
    jobs: mpsc::SyncSender<(u64, Vec<u8>)>,
) -> Result<String, LayerError> {
    let closed = || LayerError::Write {
        path: tree.root.clone(),
        source: io::Error::other("the compressor stopped"),
    };
    let mut chunker = Chunker {
        buffer: Vec::with_capacity(MEMBER_SIZE),
        hash: Sha256::new(),
        index: 0,
        jobs,
    };
    let mut tar = tar::Builder::new(&mut chunker);
    tar.mode(tar::HeaderMode::Deterministic);
    for entry in &tree.entries {
        let path = tree.root.join(&entry.relative);
        let read = |e: io::Error| LayerError::Read {
            path: path.clone(),
            source: e,
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.meta.mode() & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(settings.mtime);
        let kind = entry.meta.file_type();
        let appended = if let Some(target) = &entry.target {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &entry.relative, target)
        } else if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, &entry.relative, io::empty())
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(entry.meta.len());
            let file = File::open(&path).map_err(read)?;
            // Opening follows a symlink: had the file been replaced by one since it was listed
            // (pointing out of the output directory, say), this is another file. Only the
            // file that was listed is read.
            let opened = file.metadata().map_err(read)?;
            if opened.ino() != entry.meta.ino() || opened.dev() != entry.meta.dev() {
                return Err(read(io::Error::other(
                    "it was replaced while the layer was written",
                )));
            }
            // Reads of up to 256 KiB: io::copy takes a BufReader's buffer as is, where it
            // would read a bare file 8 KiB at a time.
            let capacity = usize::try_from(entry.meta.len())
                .unwrap_or(usize::MAX)
                .clamp(512, 256 << 10);
            let exact = io::BufReader::with_capacity(
                capacity,
                Exact {
                    inner: file,
                    remaining: entry.meta.len(),
                },
            );
            tar.append_data(&mut header, &entry.relative, exact)
        };
        appended.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => LayerError::Changed(path.clone()),
            io::ErrorKind::BrokenPipe => closed(),
            _ => read(e),
        })?;
    }
    tar.finish().map_err(|_| closed())?;
    drop(tar);
    chunker.flush_chunk().map_err(|_| closed())?;
    Ok(format!("sha256:{}", hex::encode(chunker.hash.finalize())))
}

/// Exactly `remaining` bytes of a file whose size was read before: a file that shrank is an
/// error (its tar header already promised the size), one that grew is cut.
struct Exact {
    inner: File,
    remaining: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got = self.inner.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= got as u64;
        Ok(got)
    }
}

/// Cuts the tar stream into [`MEMBER_SIZE`] chunks and hashes it.
struct Chunker {
    buffer: Vec<u8>,
    hash: Sha256,
    index: u64,
    jobs: mpsc::SyncSender<(u64, Vec<u8>)>,
}

impl Chunker {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(MEMBER_SIZE));
        self.jobs
            .send((self.index, chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        self.index += 1;
        Ok(())
    }
}

impl Write for Chunker {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(MEMBER_SIZE - self.buffer.len());
        self.buffer.extend_from_slice(&data[..take]);
        self.hash.update(&data[..take]);
        if self.buffer.len() == MEMBER_SIZE {
            self.flush_chunk()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Collects the compressed members in order; returns the digest, size and bytes of the whole.
fn write_members(
    done: mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    dir: &Path,
    memory_limit: u64,
) -> Result<(String, u64, Compressed), LayerError> {
    let error = |e| LayerError::Write {
        path: dir.to_owned(),
        source: e,
    };
    let mut parts: Vec<bytes::Bytes> = Vec::new();
    let mut spilled: Option<(TempFile, BufWriter<File>)> = None;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for (index, member) in done {
        waiting.insert(index, member.map_err(error)?);
        while let Some(member) = waiting.remove(&next) {
            hash.update(&member);
            size += member.len() as u64;
            next += 1;
            if spilled.is_none() && size > memory_limit {
                let (temp, file) = TempFile::create(dir).map_err(error)?;
                let mut out = BufWriter::with_capacity(1 << 20, file);
                for part in parts.drain(..) {
                    out.write_all(&part).map_err(error)?;
                }
                spilled = Some((temp, out));
            }
            match &mut spilled {
                Some((_, out)) => out.write_all(&member).map_err(error)?,
                None => parts.push(bytes::Bytes::from(member)),
            }
        }
    }
    let bytes = match spilled {
        Some((temp, mut out)) => {
            out.flush().map_err(error)?;
            Compressed::File(temp)
        }
        None => Compressed::Memory(parts),
    };
    Ok((
        format!("sha256:{}", hex::encode(hash.finalize())),
        size,
        bytes,
    ))
}

/// Where the layers of scanned directories are remembered.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The layer remembered for `fingerprint`; any unreadable entry is a miss.
    pub fn get(&self, fingerprint: &str) -> Option<Layer> {
        let bytes = std::fs::read(self.dir.join(format!("{fingerprint}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remembers `layer` for `fingerprint`, atomically (a crash leaves no half entry).
    pub fn put(&self, fingerprint: &str, layer: &Layer) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec(layer).map_err(io::Error::other)?;
        let temp = self
            .dir
            .join(format!("{fingerprint}.{}.tmp", std::process::id()));
        std::fs::write(&temp, json)?;
        std::fs::rename(&temp, self.dir.join(format!("{fingerprint}.json")))
    }
}

/// A directory's layer: known from the cache, or freshly built (with its bytes).
#[derive(Debug)]
pub enum Prepared {
    Cached(Layer),
    Built(Layer, Compressed),
}

impl Prepared {
    pub fn layer(&self) -> &Layer {
        match self {
            Prepared::Cached(layer) | Prepared::Built(layer, _) => layer,
        }
    }
}

/// The layer of the directory `root`: from `cache` when its fingerprint is known, else built
/// (in memory, or in `temp_dir` when large), and remembered when the directory was settled and
/// did not change while it was read.
pub fn prepare(
    root: &Path,
    settings: Settings,
    cache: Option<&Cache>,
    temp_dir: &Path,
) -> Result<Prepared, LayerError> {
    let tree = Tree::scan(root)?;
    let fingerprint = tree.fingerprint(settings);
    if let Some(layer) = cache.and_then(|c| c.get(&fingerprint)) {
        return Ok(Prepared::Cached(layer));
    }
    let (layer, file) = build(&tree, settings, temp_dir)?;
    if let Some(cache) = cache
        && tree.settled()
        && Tree::scan(root)?.fingerprint(settings) == fingerprint
    {
        // A cache that cannot be written only costs the next publish a rebuild.
        let _ = cache.put(&fingerprint, &layer);
    }
    Ok(Prepared::Built(layer, file))
}

/// Builds the layer of `root` without the cache, e.g. when a cached layer is missing from
/// the registry and its bytes are needed.
pub fn rebuild(
    root: &Path,
    settings: Settings,
    temp_dir: &Path,
) -> Result<(Layer, Compressed), LayerError> {
    build(&Tree::scan(root)?, settings, temp_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;

    fn write(root: &Path, path: &str, content: &[u8]) {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn sample(root: &Path) {
        write(root, "bin/server", b"#!/bin/sh\necho hi\n");
        write(root, "a-b", b"sorted before a/");
        write(root, "a/z", &vec![7u8; 2 * MEMBER_SIZE + 11]);
        write(root, "a/b", b"");
        let long = format!("deep/{}/file", "n".repeat(150));
        write(root, &long, b"long name");
        std::os::unix::fs::symlink("../bin/server", root.join("a/link")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            root.join("bin/server"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }

    #[test]
    fn a_symlink_out_of_the_directory_is_stored_as_a_symlink_and_never_read_through() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", b"the node's credentials");
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "index.html", b"hello");
        let secret = outside.path().join("secret");
        std::os::unix::fs::symlink(&secret, root.path().join("absolute")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", root.path().join("up")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir")).unwrap();
        let (_, bytes) = layer_of(root.path(), Settings::default());
        let mut tar_bytes = Vec::new();
        MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert!(
            !tar_bytes
                .windows(b"the node's credentials".len())
                .any(|w| w == b"the node's credentials"),
            "a file outside the directory was read"
        );
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut links = BTreeMap::new();
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if entry.header().entry_type() == tar::EntryType::Symlink {
                let target = entry.link_name().unwrap().unwrap().display().to_string();
                links.insert(name.clone(), target);
            }
            names.push(name);
        }
        assert_eq!(links["absolute"], secret.display().to_string());
        assert_eq!(links["up"], "../../../../../../etc");
        assert_eq!(links["dir"], outside.path().display().to_string());
        // Nothing under the linked directory became an entry.
        assert!(!names.iter().any(|n| n.starts_with("dir/")), "{names:?}");
    }

    #[test]
    fn a_file_replaced_by_a_symlink_after_the_listing_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", b"the node's credentials");
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "page", b"hello");
        let tree = Tree::scan(root.path()).unwrap();
        std::fs::remove_file(root.path().join("page")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("page"))
            .unwrap();
        let temp = tempfile::tempdir().unwrap();
        let error = build(&tree, Settings::default(), temp.path()).unwrap_err();
        assert!(error.to_string().contains("page"), "{error}");
    }

    fn layer_of(root: &Path, settings: Settings) -> (Layer, Vec<u8>) {
        let temp = tempfile::tempdir().unwrap();
        let (layer, file) = build(&Tree::scan(root).unwrap(), settings, temp.path()).unwrap();
        (layer, file.read_all().unwrap())
    }

    #[test]
    fn the_same_files_give_the_same_bytes_wherever_and_whenever_they_were_written() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        sample(one.path());
        sample(two.path());
        // The second copy was written years apart, as far as the file system can tell.
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for entry in Tree::scan(two.path()).unwrap().entries {
            if entry.target.is_none() {
                File::open(two.path().join(&entry.relative))
                    .and_then(|f| f.set_modified(then))
                    .unwrap();
            }
        }
        let (a, bytes_a) = layer_of(one.path(), Settings::default());
        let (b, bytes_b) = layer_of(two.path(), Settings::default());
        assert_eq!(a, b);
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(a.size, bytes_a.len() as u64);
        assert_eq!(
            a.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes_a)))
        );
    }

    #[test]
    fn the_layer_is_a_sorted_tar_with_fixed_owners_and_times_and_the_right_diff_id() {
        let root = tempfile::tempdir().unwrap();
        sample(root.path());
        let settings = Settings {
            mtime: 1_700_000_000,
            level: 1,
        };
        let (layer, bytes) = layer_of(root.path(), settings);
        let mut tar_bytes = Vec::new();
        MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(
            layer.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&tar_bytes)))
        );
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.uid().unwrap(), 0);
            assert_eq!(header.gid().unwrap(), 0);
            assert_eq!(header.mtime().unwrap(), 1_700_000_000);
            assert_eq!(header.username().unwrap(), Some(""));
            assert_eq!(header.groupname().unwrap(), Some(""));
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "bin/server" {
                assert_eq!(header.mode().unwrap() & 0o777, 0o755);
            }
            if path == "a/link" {
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_str(),
                    Some("../bin/server")
                );
            }
            seen.push(path);
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(seen[0], "a");
        assert!(seen.iter().any(|p| p.ends_with("/file") && p.len() > 150));
        assert!(seen.contains(&"a/z".to_owned()));
    }

    #[test]
    fn incompressible_pieces_are_stored_and_text_is_compressed() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut random = vec![0u8; MEMBER_SIZE];
        rng.fill(&mut random);
        let text = "ferry layer registry digest ".repeat(MEMBER_SIZE / 28);
        let level = Settings::default().level;
        assert!(!compressible(&random, Compression::new(level)));
        assert!(compressible(text.as_bytes(), Compression::new(level)));
        let stored = compress(&random, Compression::new(level)).unwrap();
        assert!(stored.len() < random.len() + 1_000, "{}", stored.len());
        let packed = compress(text.as_bytes(), Compression::new(level)).unwrap();
        assert!(packed.len() < text.len() / 4, "{}", packed.len());
        for member in [&stored, &packed] {
            let mut back = Vec::new();
            MultiGzDecoder::new(&member[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == random || back == text.as_bytes());
        }
    }

    #[test]
    fn a_large_layer_goes_to_a_file_with_the_same_bytes() {
        let root = tempfile::tempdir().unwrap();
        // Five members that differ, so that their order shows.
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..5 {
            let text: String = (0..MEMBER_SIZE).map(|_| rng.lowercase()).collect();
            write(root.path(), &format!("part{i}"), text.as_bytes());
        }
        let temp = tempfile::tempdir().unwrap();
        let tree = Tree::scan(root.path()).unwrap();
        let (layer, in_memory) =
            build_within(&tree, Settings::default(), temp.path(), u64::MAX).unwrap();
        // Spilled midway: the members already in memory go to the file first, in order.
        let (spilled_layer, spilled) =
            build_within(&tree, Settings::default(), temp.path(), layer.size * 3 / 5).unwrap();
        assert!(matches!(in_memory, Compressed::Memory(_)));
        let Compressed::File(file) = &spilled else {
            panic!("not spilled: {spilled:?}")
        };
        let path = file.path().to_owned();
        assert_eq!(layer, spilled_layer);
        assert_eq!(in_memory.read_all().unwrap(), spilled.read_all().unwrap());
        drop(spilled);
        assert!(!path.exists(), "the temporary file is removed");
    }

    #[test]
    fn a_changed_byte_or_mode_changes_the_digest() {
        let root = tempfile::tempdir().unwrap();
        sample(root.path());
        let (before, _) = layer_of(root.path(), Settings::default());
        write(root.path(), "a/b", b"x");
        let (after, _) = layer_of(root.path(), Settings::default());
        assert_ne!(before.digest, after.digest);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            root.path().join("a/b"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let (chmodded, _) = layer_of(root.path(), Settings::default());
        assert_ne!(after.digest, chmodded.digest);
    }

    #[test]
    fn a_settled_directory_is_remembered_and_a_touched_one_is_not_trusted() {
        let root = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let cache = Cache::new(temp.path().join("cache"));
        sample(root.path());
        let first = prepare(root.path(), Settings::default(), Some(&cache), temp.path()).unwrap();
        assert!(matches!(first, Prepared::Built(..)), "too fresh to cache");
        std::thread::sleep(SETTLE + Duration::from_millis(50));
        let second = prepare(root.path(), Settings::default(), Some(&cache), temp.path()).unwrap();
        assert!(matches!(second, Prepared::Built(..)));
        let third = prepare(root.path(), Settings::default(), Some(&cache), temp.path()).unwrap();
        assert!(matches!(third, Prepared::Cached(_)), "{third:?}");
        assert_eq!(third.layer(), second.layer());
        // Same size, mtime put back: the ctime still tells.
        let file = root.path().join("a/b");
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        write(root.path(), "a/b", b"");
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let fourth = prepare(root.path(), Settings::default(), Some(&cache), temp.path()).unwrap();
        assert!(matches!(fourth, Prepared::Built(..)), "{fourth:?}");
    }

    #[test]
    fn a_missing_or_plain_file_output_is_named() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("nothing");
        let error = Tree::scan(&missing).unwrap_err();
        assert!(matches!(error, LayerError::Missing(_)), "{error}");
        assert!(error.to_string().contains("nothing"), "{error}");
        write(temp.path(), "plain", b"x");
        let error = Tree::scan(&temp.path().join("plain")).unwrap_err();
        assert!(matches!(error, LayerError::NotADirectory(_)), "{error}");
    }
}
