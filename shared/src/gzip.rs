//! Gzip on both cores: a parallel writer that still produces one ordinary
//! gzip member, and a checking reader.
//!
//! # Writer
//!
//! The pigz technique: the input is cut into 1 MiB chunks, worker threads
//! deflate chunks independently (raw deflate, each chunk ended by a sync
//! flush so it ends on a byte boundary, the last one by a final block), and
//! a writer thread puts them back in order behind one gzip header and
//! trailer, combining the chunks' CRC-32s. The result is a single standard
//! gzip member that `gunzip`, `zcat`, Python's `gzip` and every other reader
//! accept. Chunks use no preset dictionary: measured on SQL dumps this costs
//! 0.1 % of size and keeps chunks independent.
//!
//! Each chunk may use its own level (deflate allows it per block). With
//! `adaptive`, a chunk whose samples do not shrink at level 1 (JPEG, MP4,
//! ZIP) is stored (level 0) instead of being compressed for nothing.
//!
//! Memory is bounded: at most `2 * threads + 2` chunks exist at a time, in
//! the queue, in the workers or waiting to be written in order.
//!
//! We do not use the `gzp` crate: it fixes one level per stream, and the
//! per-chunk level choice is the point of `adaptive`.
//!
//! # Reader
//!
//! [`inflate_file`] decompresses a whole file, checking every member's
//! CRC-32 and length, that the stream is not cut short and that nothing
//! follows it, while hashing the compressed bytes (sha256).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};

/// Size of the chunks compressed in parallel.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Worker threads by default: the CPUs, at most 4. More cores would not
/// make a dump faster (pg_dump and the server set the pace by then) but
/// would cost memory: each thread keeps up to two chunks in flight.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Compression settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GzOptions {
    /// Deflate level 0..=9.
    pub level: u32,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Store chunks that do not compress instead of compressing them.
    pub adaptive: bool,
}

impl GzOptions {
    /// `level` on every available core.
    pub fn new(level: u32) -> GzOptions {
        let threads = default_threads();
        GzOptions {
            level: level.min(9),
            threads,
            adaptive: false,
        }
    }
}

/// What a finished stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzStats {
    /// Uncompressed bytes.
    pub raw_bytes: u64,
    /// Compressed bytes written (header and trailer included).
    pub gz_bytes: u64,
    /// CRC-32 of the uncompressed data (as in the gzip trailer).
    pub crc32: u32,
    /// sha256 of the compressed bytes, lowercase hex.
    pub sha256: String,
    /// Chunks that were stored rather than compressed.
    pub stored_chunks: u64,
    /// The chunks in order: uncompressed and compressed size of each (the
    /// first starts after the 10-byte header; the 8-byte trailer follows the
    /// last). With this index a reader can inflate the chunks in parallel.
    pub chunks: Vec<Chunk>,
}

/// One independently compressed piece of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Uncompressed bytes.
    pub raw: u64,
    /// Compressed bytes.
    pub gz: u64,
}

/// What the producer knows about the bytes it writes, so that a chunk's
/// level fits its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Decide per chunk: `opts.level`, or store when `adaptive` and samples
    /// do not shrink.
    Auto,
    /// Compress at `opts.level`.
    Compress,
    /// Store (level 0): the bytes are already compressed.
    Store,
}

struct Job {
    seq: u64,
    data: Vec<u8>,
    last: bool,
    hint: Hint,
}

struct Done {
    seq: u64,
    len: usize,
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    last: bool,
    stored: bool,
}

struct Shared {
    error: Mutex<Option<io::Error>>,
    failed: AtomicBool,
    inflight: Mutex<usize>,
    room: Condvar,
    max_inflight: usize,
}

impl Shared {
    fn fail(&self, e: io::Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
        self.room.notify_all();
    }

    fn take_error(&self) -> io::Error {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| io::Error::other("compression stopped"))
    }

    fn release(&self) {
        let mut n = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.room.notify_all();
    }
}

/// A `Write` that gzips on several threads into `W`. Call
/// [`ParGzWriter::finish`] to write the trailer; dropping it without
/// `finish` (or calling [`ParGzWriter::abort`]) leaves the stream without
/// its final block and trailer, so no reader mistakes it for complete.
pub struct ParGzWriter<W: Write + Send + 'static> {
    buf: Vec<u8>,
    hint: Hint,
    seq: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<(W, GzStats)>>>,
    shared: Arc<Shared>,
    aborted: Arc<AtomicBool>,
}

impl<W: Write + Send + 'static> ParGzWriter<W> {
    /// Start the threads; the gzip header is written at once.
    pub fn new(inner: W, opts: GzOptions) -> ParGzWriter<W> {
        let threads = opts.threads.max(1);
        let shared = Arc::new(Shared {
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            inflight: Mutex::new(0),
            room: Condvar::new(),
            max_inflight: 2 * threads + 2,
        });
        let aborted = Arc::new(AtomicBool::new(false));
        let (job_tx, job_rx) = sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = sync_channel::<Done>(threads + 1);
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || worker(rx, tx, shared, opts))
            })
            .collect();
        drop(done_tx);
        let w_shared = Arc::clone(&shared);
        let w_aborted = Arc::clone(&aborted);
        let writer =
            std::thread::spawn(move || write_in_order(inner, done_rx, w_shared, w_aborted));
        ParGzWriter {
            buf: Vec::with_capacity(CHUNK_SIZE),
            hint: Hint::Auto,
            seq: 0,
            jobs: Some(job_tx),
            workers,
            writer: Some(writer),
            shared,
            aborted,
        }
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        {
            let mut n = self
                .shared
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            while *n >= self.shared.max_inflight && !self.shared.failed.load(Ordering::SeqCst) {
                n = self.shared.room.wait(n).unwrap_or_else(|p| p.into_inner());
            }
            if self.shared.failed.load(Ordering::SeqCst) {
                return Err(self.shared.take_error());
            }
            *n += 1;
        }
        let data = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(if last { 0 } else { CHUNK_SIZE }),
        );
        let job = Job {
            seq: self.seq,
            data,
            last,
            hint: self.hint,
        };
        self.seq += 1;
        let sent = self
            .jobs
            .as_ref()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(self.shared.take_error());
        }
        Ok(())
    }

    /// Write `data` with a hint about its content. A change of hint ends
    /// the current chunk, so each chunk gets the level its content needs.
    pub fn write_hinted(&mut self, mut data: &[u8], hint: Hint) -> io::Result<()> {
        if hint != self.hint {
            if !self.buf.is_empty() {
                self.submit(false)?;
            }
            self.hint = hint;
        }
        while !data.is_empty() {
            let n = self.push(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    fn push(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(self.shared.take_error());
        }
        let room = CHUNK_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_SIZE {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Write the last chunk and the trailer; returns the inner writer
    /// (flushed) and what was written.
    pub fn finish(mut self) -> io::Result<(W, GzStats)> {
        self.submit(true)?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(|h| h.join()) {
            Some(Ok(res)) => res,
            _ => Err(io::Error::other("gzip writer thread panicked")),
        }
    }

    /// Stop without a final block or trailer: what was written so far is an
    /// unterminated gzip stream that every reader reports as truncated.
    pub fn abort(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.shared.room.notify_all();
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl<W: Write + Send + 'static> Drop for ParGzWriter<W> {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.stop();
        }
    }
}

impl<W: Write + Send + 'static> Write for ParGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.hint != Hint::Auto {
            self.write_hinted(data, Hint::Auto)?;
            return Ok(data.len());
        }
        self.push(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    tx: SyncSender<Done>,
    shared: Arc<Shared>,
    opts: GzOptions,
) {
    // One compressor per worker, reset per chunk: its state is large and
    // chunks may be small.
    let mut comp = Compress::new(Compression::new(opts.level), false);
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            match guard.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&job.data);
        let (out, stored) = if shared.failed.load(Ordering::SeqCst) {
            (Vec::new(), false)
        } else {
            let level = match job.hint {
                Hint::Auto => choose_level(&job.data, opts),
                Hint::Compress => opts.level,
                Hint::Store => 0,
            };
            match deflate_with(&mut comp, &job.data, level, job.last) {
                Ok(out) => (out, level == 0 && opts.level != 0),
                Err(e) => {
                    shared.fail(e);
                    (Vec::new(), false)
                }
            }
        };
        let done = Done {
            seq: job.seq,
            len: job.data.len(),
            out,
            crc,
            last: job.last,
            stored,
        };
        if tx.send(done).is_err() {
            return;
        }
    }
}

/// The level for one chunk: `opts.level`, or 0 when `adaptive` and level-1
/// samples of the chunk do not shrink below 97 %.
fn choose_level(data: &[u8], opts: GzOptions) -> u32 {
    const SAMPLE: usize = 8 << 10;
    if !opts.adaptive || opts.level == 0 || data.len() < 4 * SAMPLE {
        return opts.level;
    }
    let step = data.len() / 4;
    let mut inb = 0;
    let mut outb = 0;
    for i in 0..4 {
        let s = &data[i * step..i * step + SAMPLE];
        let Ok(out) = deflate_chunk(s, 1, true) else {
            return opts.level;
        };
        inb += s.len();
        outb += out.len();
    }
    if outb * 100 >= inb * 97 {
        0
    } else {
        opts.level
    }
}

/// Raw-deflate `data` at `level`, ending with a final block when `last`,
/// else with a sync flush (byte-aligned, so chunks concatenate).
pub fn deflate_chunk(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    deflate_with(
        &mut Compress::new(Compression::new(level), false),
        data,
        level,
        last,
    )
}

fn deflate_with(c: &mut Compress, data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    c.reset();
    c.set_level(Compression::new(level))
        .map_err(|e| io::Error::other(format!("deflate level: {e}")))?;
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 256);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(|e| io::Error::other(format!("deflate failed: {e}")))?;
        let all_in = c.total_in() as usize == data.len();
        match (last, status) {
            (true, Status::StreamEnd) => return Ok(out),
            (false, _) if all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

fn write_in_order<W: Write>(
    mut inner: W,
    rx: Receiver<Done>,
    shared: Arc<Shared>,
    aborted: Arc<AtomicBool>,
) -> io::Result<(W, GzStats)> {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let mut sha = Sha256::new();
    let mut gz_bytes = 0u64;
    let mut crc = crc32fast::Hasher::new();
    let mut stored_chunks = 0u64;
    let mut raw_bytes = 0u64;
    let mut chunks = Vec::new();
    let mut put = |inner: &mut W, bytes: &[u8], sha: &mut Sha256| -> io::Result<()> {
        inner.write_all(bytes)?;
        sha.update(bytes);
        gz_bytes += bytes.len() as u64;
        Ok(())
    };
    let mut ok = match put(&mut inner, &HEADER, &mut sha) {
        Ok(()) => true,
        Err(e) => {
            shared.fail(e);
            false
        }
    };
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut finished = false;
    for done in rx {
        pending.insert(done.seq, done);
        while let Some(d) = pending.remove(&next) {
            next += 1;
            crc.combine(&d.crc);
            raw_bytes += d.len as u64;
            stored_chunks += d.stored as u64;
            if ok && !aborted.load(Ordering::SeqCst) && !shared.failed.load(Ordering::SeqCst) {
                chunks.push(Chunk {
                    raw: d.len as u64,
                    gz: d.out.len() as u64,
                });
                let mut res = put(&mut inner, &d.out, &mut sha);
                if res.is_ok() && d.last {
                    let mut trailer = [0u8; 8];
                    let total = raw_bytes;
                    let sum = crc.clone().finalize();
                    trailer[..4].copy_from_slice(&sum.to_le_bytes());
                    trailer[4..].copy_from_slice(&(total as u32).to_le_bytes());
                    res = put(&mut inner, &trailer, &mut sha).and_then(|_| inner.flush());
                    finished = res.is_ok();
                }
                if let Err(e) = res {
                    ok = false;
                    shared.fail(e);
                }
            }
            shared.release();
        }
    }
    if !finished {
        return Err(shared.take_error());
    }
    let stats = GzStats {
        raw_bytes,
        gz_bytes,
        crc32: crc.finalize(),
        sha256: hex(&sha.finalize()),
        stored_chunks,
        chunks,
    };
    Ok((inner, stats))
}

/// sha256 of a whole file, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&sha.finalize()));
        }
        sha.update(&buf[..n]);
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Why a gzip file is not good.
#[derive(Debug)]
pub enum GzProblem {
    /// The file could not be opened or read at all (permissions, I/O error).
    Unreadable(io::Error),
    /// Zero bytes.
    Empty,
    /// It does not start with the gzip magic.
    NotGzip,
    /// The compressed stream ends early.
    Truncated {
        /// Uncompressed bytes recovered before the end.
        raw_bytes: u64,
    },
    /// Corrupt data, a CRC-32 or length mismatch.
    Corrupt {
        /// Uncompressed bytes recovered before the damage was found.
        raw_bytes: u64,
        /// The decoder's words.
        detail: String,
    },
    /// Bytes that are not gzip follow the stream.
    TrailingGarbage {
        /// How many.
        bytes: u64,
    },
    /// The consumer of the data refused it (a read error of a pipeline).
    Consumer(io::Error),
}

impl std::fmt::Display for GzProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GzProblem::Unreadable(e) => write!(f, "cannot read the file: {e}"),
            GzProblem::Empty => write!(f, "the file is empty"),
            GzProblem::NotGzip => write!(f, "not a gzip file (no gzip magic at the start)"),
            GzProblem::Truncated { raw_bytes } => {
                write!(
                    f,
                    "the gzip stream is truncated (ends early, after {raw_bytes} uncompressed bytes)"
                )
            }
            GzProblem::Corrupt { raw_bytes, detail } => {
                write!(
                    f,
                    "the gzip data is corrupt after {raw_bytes} uncompressed bytes ({detail})"
                )
            }
            GzProblem::TrailingGarbage { bytes } => {
                write!(
                    f,
                    "{bytes} bytes of trailing garbage after the end of the gzip stream"
                )
            }
            GzProblem::Consumer(e) => write!(f, "{e}"),
        }
    }
}

/// What a good gzip file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflated {
    /// Compressed size.
    pub gz_bytes: u64,
    /// Uncompressed size.
    pub raw_bytes: u64,
    /// sha256 of the compressed bytes.
    pub sha256: String,
    /// Number of gzip members (1 for what tb writes).
    pub members: u32,
    /// CRC-32 of all the uncompressed data.
    pub crc32: u32,
}

struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Decompress `path` completely, feeding the uncompressed bytes to
/// `consume`, checking CRC-32s, lengths, truncation and trailing bytes.
pub fn inflate_file(
    path: &Path,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, GzProblem> {
    let file = File::open(path).map_err(GzProblem::Unreadable)?;
    inflate_reader(file, consume)
}

/// [`inflate_file`] on any reader (stdin, a pipe).
pub fn inflate_reader(
    reader: impl Read,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, GzProblem> {
    let hashing = HashingReader {
        inner: reader,
        sha: Sha256::new(),
        bytes: 0,
    };
    let mut br = BufReader::with_capacity(256 << 10, hashing);
    let mut raw_bytes = 0u64;
    let mut members = 0u32;
    let mut crc = crc32fast::Hasher::new();
    let mut out = vec![0u8; 256 << 10];
    loop {
        let head = br.fill_buf().map_err(GzProblem::Unreadable)?;
        if head.is_empty() {
            if members == 0 {
                return Err(GzProblem::Empty);
            }
            break;
        }
        if head.len() < 2 && members == 0 {
            return Err(GzProblem::NotGzip);
        }
        if !head.starts_with(&[0x1f, 0x8b]) {
            if members == 0 {
                return Err(GzProblem::NotGzip);
            }
            let mut rest = 0u64;
            loop {
                let n = br.fill_buf().map_err(GzProblem::Unreadable)?.len();
                if n == 0 {
                    break;
                }
                rest += n as u64;
                br.consume(n);
            }
            return Err(GzProblem::TrailingGarbage { bytes: rest });
        }
        members += 1;
        let mut dec = flate2::bufread::GzDecoder::new(&mut br);
        loop {
            match dec.read(&mut out) {
                Ok(0) => break,
                Ok(n) => {
                    raw_bytes += n as u64;
                    crc.update(&out[..n]);
                    consume(&out[..n]).map_err(GzProblem::Consumer)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(GzProblem::Truncated { raw_bytes });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
                    ) =>
                {
                    return Err(GzProblem::Corrupt {
                        raw_bytes,
                        detail: e.to_string(),
                    });
                }
                Err(e) => return Err(GzProblem::Unreadable(e)),
            }
        }
    }
    let inner = br.into_inner();
    Ok(Inflated {
        gz_bytes: inner.bytes,
        raw_bytes,
        sha256: hex(&inner.sha.finalize()),
        members,
        crc32: crc.finalize(),
    })
}

/// [`inflate_file`] using the chunk index that [`ParGzWriter`] recorded
/// (`chunks`): the chunks are inflated on `threads` cores and fed to
/// `consume` in order. The checks are those of a sequential reader: the
/// header, every chunk decoding on its own to exactly its recorded size
/// (the last ending with the final block, the others without), the CRC-32 and
/// length in the trailer, nothing after it. A chunk that decodes without
/// history decodes the same after its predecessors, so what passes here
/// passes `gunzip`. When the index does not fit the file the result is an
/// error; callers wanting the sequential reader's reason read it again.
pub fn inflate_file_indexed(
    path: &Path,
    chunks: &[Chunk],
    threads: usize,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, GzProblem> {
    if chunks.is_empty() {
        return inflate_file(path, consume);
    }
    let file = File::open(path).map_err(GzProblem::Unreadable)?;
    inflate_indexed(file, chunks, threads.max(1), consume)
}

fn inflate_indexed(
    file: File,
    chunks: &[Chunk],
    threads: usize,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, GzProblem> {
    use std::sync::mpsc::sync_channel;
    struct Limit {
        n: Mutex<usize>,
        cv: Condvar,
        stop: AtomicBool,
    }
    // The index must describe exactly this file: header, chunks, trailer.
    let listed = chunks
        .iter()
        .try_fold(18u64, |sum, c| sum.checked_add(c.gz));
    let actual = file.metadata().map_err(GzProblem::Unreadable)?.len();
    if listed != Some(actual) {
        return Err(GzProblem::Corrupt {
            raw_bytes: 0,
            detail: format!("the chunk index lists {listed:?} bytes, the file has {actual}"),
        });
    }
    let limit = Limit {
        n: Mutex::new(0),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
    };
    let max_inflight = 2 * threads + 2;
    let last_seq = chunks.len() - 1;
    let (job_tx, job_rx) = sync_channel::<(usize, Vec<u8>)>(threads);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        let (res_tx, res_rx) =
            sync_channel::<(usize, Result<(Vec<u8>, crc32fast::Hasher), String>)>(threads + 1);
        let limit = &limit;
        let reader = scope.spawn(move || -> Result<(u32, u32, u64, String), GzProblem> {
            let mut r = HashingReader {
                inner: file,
                sha: Sha256::new(),
                bytes: 0,
            };
            let mut header = [0u8; 10];
            read_exact_or(&mut r, &mut header, 0)?;
            if header[..2] != [0x1f, 0x8b] {
                return Err(GzProblem::NotGzip);
            }
            if header[2] != 8 || header[3] != 0 {
                return Err(GzProblem::Corrupt {
                    raw_bytes: 0,
                    detail: "unexpected gzip header".into(),
                });
            }
            let mut raw_at = 0u64;
            for (seq, chunk) in chunks.iter().enumerate() {
                {
                    let mut n = limit.n.lock().unwrap_or_else(|p| p.into_inner());
                    while *n >= max_inflight && !limit.stop.load(Ordering::SeqCst) {
                        n = limit.cv.wait(n).unwrap_or_else(|p| p.into_inner());
                    }
                    if limit.stop.load(Ordering::SeqCst) {
                        return Err(GzProblem::Corrupt {
                            raw_bytes: 0,
                            detail: "stopped".into(),
                        });
                    }
                    *n += 1;
                }
                if chunk.gz > (CHUNK_SIZE as u64) * 2 || chunk.raw > CHUNK_SIZE as u64 {
                    return Err(GzProblem::Corrupt {
                        raw_bytes: raw_at,
                        detail: "the chunk index is not plausible".into(),
                    });
                }
                let mut buf = vec![0u8; chunk.gz as usize];
                read_exact_or(&mut r, &mut buf, raw_at)?;
                raw_at += chunk.raw;
                if job_tx.send((seq, buf)).is_err() {
                    return Err(GzProblem::Corrupt {
                        raw_bytes: 0,
                        detail: "stopped".into(),
                    });
                }
            }
            drop(job_tx);
            let mut trailer = [0u8; 8];
            read_exact_or(&mut r, &mut trailer, raw_at)?;
            let mut rest = [0u8; 4096];
            let mut extra = 0u64;
            loop {
                match r.read(&mut rest) {
                    Ok(0) => break,
                    Ok(n) => extra += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(GzProblem::Unreadable(e)),
                }
            }
            if extra > 0 {
                return Err(GzProblem::TrailingGarbage { bytes: extra });
            }
            let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
            let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
            Ok((crc, isize, r.bytes, hex(&r.sha.finalize())))
        });
        for _ in 0..threads {
            let rx = &job_rx;
            let tx = res_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = { rx.lock().unwrap_or_else(|p| p.into_inner()).recv() };
                    let Ok((seq, data)) = job else { return };
                    let out = inflate_chunk(&data, seq == last_seq, chunks[seq].raw).map(|out| {
                        let mut h = crc32fast::Hasher::new();
                        h.update(&out);
                        (out, h)
                    });
                    if tx.send((seq, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let mut pending = BTreeMap::new();
        let mut next = 0usize;
        let mut crc = crc32fast::Hasher::new();
        let mut raw_bytes = 0u64;
        let mut problem: Option<GzProblem> = None;
        for (seq, res) in res_rx.iter() {
            pending.insert(seq, res);
            while let Some(res) = pending.remove(&next) {
                {
                    let mut n = limit.n.lock().unwrap_or_else(|p| p.into_inner());
                    *n = n.saturating_sub(1);
                    limit.cv.notify_all();
                }
                if problem.is_none() {
                    match res {
                        Ok((out, _)) if out.len() as u64 != chunks[next].raw => {
                            problem = Some(GzProblem::Corrupt {
                                raw_bytes,
                                detail: format!(
                                    "chunk {next} holds {} bytes, not {}",
                                    out.len(),
                                    chunks[next].raw
                                ),
                            });
                        }
                        Ok((out, h)) => {
                            crc.combine(&h);
                            raw_bytes += out.len() as u64;
                            if let Err(e) = consume(&out) {
                                problem = Some(GzProblem::Consumer(e));
                            }
                        }
                        Err(detail) => problem = Some(GzProblem::Corrupt { raw_bytes, detail }),
                    }
                    if problem.is_some() {
                        limit.stop.store(true, Ordering::SeqCst);
                        limit.cv.notify_all();
                    }
                }
                next += 1;
            }
        }
        let read = reader.join().unwrap_or_else(|_| {
            Err(GzProblem::Corrupt {
                raw_bytes: 0,
                detail: "reader panicked".into(),
            })
        });
        if let Some(p) = problem {
            return Err(p);
        }
        let (want_crc, want_len, gz_bytes, sha256) = read?;
        if next != chunks.len() {
            return Err(GzProblem::Truncated { raw_bytes });
        }
        if crc.clone().finalize() != want_crc || raw_bytes as u32 != want_len {
            return Err(GzProblem::Corrupt {
                raw_bytes,
                detail: "CRC-32 or length does not match the gzip trailer".into(),
            });
        }
        Ok(Inflated {
            gz_bytes,
            raw_bytes,
            sha256,
            members: 1,
            crc32: want_crc,
        })
    })
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], raw_bytes: u64) -> Result<(), GzProblem> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => GzProblem::Truncated { raw_bytes },
        _ => GzProblem::Unreadable(e),
    })
}

/// Inflate one independent raw-deflate chunk: a non-last chunk must end
/// exactly at its input's end without a final block; the last must end with
/// the final block exactly there.
fn inflate_chunk(data: &[u8], last: bool, raw: u64) -> Result<Vec<u8>, String> {
    use flate2::{Decompress, FlushDecompress};
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(raw.min(CHUNK_SIZE as u64) as usize + 1);
    loop {
        if out.len() == out.capacity() {
            if out.len() as u64 > raw {
                return Err("a chunk decompresses to more than its size".into());
            }
            out.reserve(64 << 10);
        }
        let (in0, out0) = (d.total_in(), d.total_out());
        let st = d
            .decompress_vec(
                &data[d.total_in() as usize..],
                &mut out,
                FlushDecompress::None,
            )
            .map_err(|e| format!("corrupt deflate data: {e}"))?;
        let all_in = d.total_in() as usize == data.len();
        match st {
            Status::StreamEnd if !last => {
                return Err("a final block appears before the end of the stream".into());
            }
            Status::StreamEnd if !all_in => return Err("data follows the final block".into()),
            Status::StreamEnd => return Ok(out),
            _ if all_in && out.len() < out.capacity() => {
                if last {
                    return Err("the stream ends without its final block".into());
                }
                // The chunk must end between blocks, or a sequential reader
                // would read on differently. Between blocks, an empty final
                // stored block ends the stream at once with no output; in
                // the middle of a block these bytes would be data or an error.
                let before = d.total_out();
                let mut probe = Vec::with_capacity(16);
                let end = d
                    .decompress_vec(
                        &[0x01, 0x00, 0x00, 0xff, 0xff],
                        &mut probe,
                        FlushDecompress::Finish,
                    )
                    .map_err(|e| format!("the chunk does not end between deflate blocks ({e})"))?;
                if end != Status::StreamEnd || d.total_out() != before || !probe.is_empty() {
                    return Err("the chunk does not end between deflate blocks".into());
                }
                return Ok(out);
            }
            _ if d.total_in() == in0 && d.total_out() == out0 && out.len() < out.capacity() => {
                return Err("the deflate data ends early".into());
            }
            _ => {}
        }
    }
}

/// A pull-based reader of a whole gzip file: decompression (on every core
/// when the chunk index is given) runs in a thread and hands the data over
/// in order through a small bounded queue, so a parser such as a tar reader
/// can read it with `Read`. At EOF call [`InflateReader::finish`]: the data
/// read is only known complete and good when it returns `Ok`.
pub struct InflateReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    handle: Option<JoinHandle<Result<Inflated, GzProblem>>>,
}

impl InflateReader {
    /// Start reading `path` (with its chunk index, if known).
    pub fn open(path: &Path, chunks: Option<Vec<Chunk>>, threads: usize) -> InflateReader {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let path = path.to_path_buf();
        let handle = std::thread::spawn(move || {
            let mut send = |b: &[u8]| {
                tx.send(b.to_vec())
                    .map_err(|_| io::Error::other("reader went away"))
            };
            match chunks {
                Some(c) if !c.is_empty() => {
                    match inflate_file_indexed(&path, &c, threads, &mut send) {
                        // The index did not fit and nothing was handed over yet:
                        // read sequentially instead.
                        Err(GzProblem::Corrupt { raw_bytes: 0, .. }) => {
                            inflate_file(&path, &mut send)
                        }
                        other => other,
                    }
                }
                _ => inflate_file(&path, &mut send),
            }
        });
        InflateReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            handle: Some(handle),
        }
    }

    /// Read a stream (stdin, a pipe) sequentially.
    pub fn from_reader(r: impl Read + Send + 'static) -> InflateReader {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let handle = std::thread::spawn(move || {
            inflate_reader(r, &mut |b: &[u8]| {
                tx.send(b.to_vec())
                    .map_err(|_| io::Error::other("reader went away"))
            })
        });
        InflateReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            handle: Some(handle),
        }
    }

    /// Wait for the decompression to end (reading what is left) and return
    /// its verdict.
    pub fn finish(mut self) -> Result<Inflated, GzProblem> {
        while self.rx.recv().is_ok() {}
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(GzProblem::Corrupt {
                raw_bytes: 0,
                detail: "the decompression thread failed".into(),
            }),
        }
    }
}

impl Read for InflateReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn compress(data: &[u8], opts: GzOptions) -> (Vec<u8>, GzStats) {
        let mut w = ParGzWriter::new(Vec::new(), opts);
        for piece in data.chunks(77_777) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!("{i}\tuser{}\tこんにちは\\n\t{}\n", i % 977, i * 31 % 1013).as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn output_is_one_standard_gzip_member_for_many_sizes() {
        for n in [
            0,
            1,
            1000,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE + 12345,
        ] {
            let data = text(n);
            for threads in [1, 2, 4] {
                let (gz, stats) = compress(
                    &data,
                    GzOptions {
                        level: 5,
                        threads,
                        adaptive: false,
                    },
                );
                assert_eq!(gunzip(&gz), data, "n={n} threads={threads}");
                assert_eq!(stats.raw_bytes, n as u64);
                assert_eq!(stats.gz_bytes, gz.len() as u64);
                assert_eq!(stats.crc32, crc32fast::hash(&data));
                assert_eq!(stats.sha256, hex(&Sha256::digest(&gz)));
                let got = inflate_reader(Cursor::new(&gz), &mut |_| Ok(())).unwrap();
                assert_eq!(got.members, 1, "a single member");
                assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
            }
        }
    }

    #[test]
    fn gnu_gzip_reads_it() {
        let data = text(2 * CHUNK_SIZE + 99);
        let (gz, _) = compress(&data, GzOptions::new(6));
        let mut child = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        let mut stdin = child.stdin.take().unwrap();
        let t = std::thread::spawn(move || stdin.write_all(&gz));
        let out = child.wait_with_output().unwrap();
        t.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn adaptive_stores_incompressible_chunks_and_compresses_text() {
        let mut data = noise(2 * CHUNK_SIZE);
        data.extend(text(2 * CHUNK_SIZE));
        let (gz, stats) = compress(
            &data,
            GzOptions {
                level: 6,
                threads: 2,
                adaptive: true,
            },
        );
        assert_eq!(gunzip(&gz), data);
        assert_eq!(stats.stored_chunks, 2);
        let stored_overhead = gz.len() as f64 - (2 * CHUNK_SIZE) as f64;
        assert!(
            stored_overhead < (2 * CHUNK_SIZE) as f64 * 0.5,
            "text part still compressed"
        );
        let (gz_fixed, _) = compress(
            &data,
            GzOptions {
                level: 6,
                threads: 2,
                adaptive: false,
            },
        );
        assert!(gz.len() <= gz_fixed.len() + gz_fixed.len() / 100);
    }

    #[test]
    fn aborted_stream_is_reported_truncated() {
        let data = text(3 * CHUNK_SIZE);
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = ParGzWriter::new(Shared(Arc::clone(&out)), GzOptions::new(5));
        w.write_all(&data).unwrap();
        w.abort();
        let bytes = out.lock().unwrap().clone();
        assert!(bytes.len() >= 10, "the header was written");
        let err = inflate_reader(Cursor::new(&bytes), &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, GzProblem::Truncated { .. }), "{err}");
    }

    #[test]
    fn write_errors_surface_to_the_producer() {
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 + b.len() > 100_000 {
                    return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
                }
                self.0 += b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = noise(8 * CHUNK_SIZE);
        let mut w = ParGzWriter::new(Full(0), GzOptions::new(1));
        let res = w.write_all(&data).and_then(|_| w.finish().map(|_| ()));
        let err = res.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC));
    }

    #[test]
    fn reader_names_each_kind_of_damage() {
        let data = text(300_000);
        let (gz, _) = compress(&data, GzOptions::new(5));
        let check = |b: &[u8]| inflate_reader(Cursor::new(b.to_vec()), &mut |_| Ok(()));
        assert!(matches!(check(b""), Err(GzProblem::Empty)));
        assert!(matches!(check(b"-- plain SQL\n"), Err(GzProblem::NotGzip)));
        assert!(matches!(
            check(&gz[..gz.len() / 2]),
            Err(GzProblem::Truncated { .. })
        ));
        assert!(matches!(
            check(&gz[..gz.len() - 3]),
            Err(GzProblem::Truncated { .. })
        ));
        let mut flipped = gz.clone();
        let n = flipped.len();
        flipped[n - 6] ^= 0xff; // inside the CRC
        assert!(matches!(check(&flipped), Err(GzProblem::Corrupt { .. })));
        let mut garbage = gz.clone();
        garbage.extend_from_slice(b"GARBAGE");
        assert!(matches!(
            check(&garbage),
            Err(GzProblem::TrailingGarbage { bytes: 7 })
        ));
        let mut two = gz.clone();
        two.extend_from_slice(&gz);
        let ok = check(&two).unwrap();
        assert_eq!((ok.members, ok.raw_bytes), (2, 600_000));
    }

    fn indexed(gz: &[u8], sizes: &[Chunk]) -> Result<Inflated, GzProblem> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.gz");
        std::fs::write(&p, gz).unwrap();
        let mut out = Vec::new();
        let r = inflate_file_indexed(&p, sizes, 2, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        });
        if let Ok(done) = &r {
            assert_eq!(done.raw_bytes, out.len() as u64);
        }
        r
    }

    #[test]
    fn indexed_inflate_matches_sequential_for_many_sizes() {
        for n in [0, 5, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 777] {
            let data = text(n);
            let (gz, stats) = compress(
                &data,
                GzOptions {
                    level: 5,
                    threads: 2,
                    adaptive: false,
                },
            );
            assert_eq!(stats.chunks.len(), n / CHUNK_SIZE + 1);
            assert_eq!(
                stats.chunks.iter().map(|c| c.gz).sum::<u64>() + 18,
                gz.len() as u64
            );
            assert_eq!(stats.chunks.iter().map(|c| c.raw).sum::<u64>(), n as u64);
            let got = indexed(&gz, &stats.chunks).unwrap();
            let seq = inflate_reader(Cursor::new(&gz), &mut |_| Ok(())).unwrap();
            assert_eq!(got, seq, "n={n}");
        }
    }

    #[test]
    fn indexed_inflate_finds_damage() {
        let data = text(3 * CHUNK_SIZE + 5);
        let (gz, stats) = compress(&data, GzOptions::new(5));
        let sizes = &stats.chunks;
        // A file whose size differs from the index is refused up front (the
        // caller then reads sequentially for the exact reason).
        assert!(indexed(&gz[..gz.len() - 100], sizes).is_err());
        assert!(indexed(&gz[..gz.len() - 4], sizes).is_err());
        let mut g = gz.clone();
        g.extend_from_slice(b"xx");
        assert!(indexed(&g, sizes).is_err());
        let mut flip = gz.clone();
        let mid = (sizes[0].gz + 10 + sizes[1].gz / 2) as usize;
        flip[mid] ^= 0x55;
        assert!(
            matches!(indexed(&flip, sizes), Err(GzProblem::Corrupt { .. })),
            "{:?}",
            indexed(&flip, sizes)
        );
        let mut wrong = sizes.clone();
        wrong[0].gz += 3;
        wrong[1].gz -= 3;
        assert!(
            indexed(&gz, &wrong).is_err(),
            "an index that does not fit is an error"
        );
        // An index that does not add up to the file is refused before reading.
        let mut huge = sizes.clone();
        huge[0].gz = 99_999_999_999;
        assert!(matches!(
            indexed(&gz, &huge),
            Err(GzProblem::Corrupt { .. })
        ));
        huge[0].gz = u64::MAX;
        assert!(matches!(
            indexed(&gz, &huge),
            Err(GzProblem::Corrupt { .. })
        ));
        assert!(
            indexed(&gz, &wrong).is_err(),
            "an index that does not fit is an error"
        );
    }

    #[test]
    fn a_chunk_split_inside_a_stored_block_is_refused() {
        // Two stored chunks of 100 kB; move the boundary 100 bytes into the
        // second chunk's first stored block (5 header bytes + 95 data).
        // Each piece still "inflates", the sizes still add up, but a
        // sequential reader would read the pieces differently.
        let a = noise(100_000);
        let b = noise(100_001);
        let mut w = ParGzWriter::new(
            Vec::new(),
            GzOptions {
                level: 0,
                threads: 2,
                adaptive: false,
            },
        );
        w.write_hinted(&a, Hint::Store).unwrap();
        w.write_hinted(&b, Hint::Compress).unwrap();
        let (gz, stats) = w.finish().unwrap();
        assert_eq!(stats.chunks.len(), 2, "{:?}", stats.chunks);
        let mut split = stats.chunks.clone();
        split[0].gz += 100;
        split[1].gz -= 100;
        split[0].raw += 95;
        split[1].raw -= 95;
        let err = indexed(&gz, &split).unwrap_err();
        assert!(format!("{err}").contains("between deflate blocks"), "{err}");
        assert_eq!(indexed(&gz, &stats.chunks).unwrap().raw_bytes, 200_001);
    }

    #[test]
    fn hints_cut_chunks_and_choose_levels() {
        let text_part = text(300_000);
        let noise_part = noise(200_000);
        let mut w = ParGzWriter::new(
            Vec::new(),
            GzOptions {
                level: 6,
                threads: 2,
                adaptive: false,
            },
        );
        w.write_hinted(&text_part[..1000], Hint::Compress).unwrap();
        w.write_hinted(&noise_part, Hint::Store).unwrap();
        w.write_hinted(&text_part[1000..], Hint::Compress).unwrap();
        w.write_all(b"tail").unwrap();
        let (gz, stats) = w.finish().unwrap();
        let mut all = text_part[..1000].to_vec();
        all.extend_from_slice(&noise_part);
        all.extend_from_slice(&text_part[1000..]);
        all.extend_from_slice(b"tail");
        assert_eq!(gunzip(&gz), all);
        let raws: Vec<u64> = stats.chunks.iter().map(|c| c.raw).collect();
        assert_eq!(raws, [1000, 200_000, 299_000, 4]);
        assert_eq!(stats.stored_chunks, 1);
        assert!(
            stats.chunks[1].gz > 200_000 && stats.chunks[1].gz < 200_100,
            "stored: {:?}",
            stats.chunks[1]
        );
        assert!(stats.chunks[2].gz < 100_000, "compressed");
        assert_eq!(
            indexed(&gz, &stats.chunks).unwrap().raw_bytes,
            all.len() as u64
        );
    }

    #[test]
    fn memory_stays_bounded_with_a_slow_sink() {
        struct Slow;
        impl Write for Slow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_micros(200));
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let opts = GzOptions {
            level: 1,
            threads: 2,
            adaptive: false,
        };
        let mut w = ParGzWriter::new(Slow, opts);
        let chunk = text(CHUNK_SIZE);
        for _ in 0..12 {
            w.write_all(&chunk).unwrap();
            let n = *w.shared.inflight.lock().unwrap();
            assert!(n <= w.shared.max_inflight, "{n} chunks in flight");
        }
        w.finish().unwrap();
    }
}
