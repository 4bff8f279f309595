//! Generating the media-like tree of the `volume` benchmark,
//! deterministically, and listing a tree (to warm the page cache and to
//! compare a restored tree with its source).
//!
//! The tree looks like the media volume of the service:
//!
//! ```text
//! uploads/YYYY/MM/IMG_nnnnnn.jpg, IMG_nnnnnn.json, VID_nnnnnn.mp4, notes_nnnnn.txt
//! cards/setNNN/card_nnnnn.png, card_nnnnn.json
//! titles/nnnnn/cover.png, meta.json, reviews.json, index.html
//! games/GENRE/SLUG.zip, SLUG.html
//! ```
//!
//! About 70 % of the bytes are in already-compressed files: each starts
//! with the real magic bytes of its format (JPEG, PNG, MP4, ZIP) and goes on
//! with pseudo-random bytes from a xorshift generator, which no compressor
//! can shrink. The rest are JSON, HTML and text files made of words drawn
//! from a small vocabulary with a skewed frequency, which compress about as
//! well as real ones. Every kind of file has its own share of the bytes and
//! its own size range; kinds are generated one after the other until their
//! share is used up, so the number of files grows with the size (about
//! 33,000 files for the default 1.65 GB).
//!
//! Everything comes from fixed seeds: the same size gives the same tree.
//! A tree is complete once its stamp file (beside it) is written; the stamp
//! holds the generator version and the counts, checked again when the tree
//! is reused.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Bumped whenever the generated content changes: older trees are remade.
const GENERATOR_VERSION: u64 = 1;

/// Size of the write buffer (files are written in pieces of this size).
const WRITE_BUFFER: usize = 1 << 20;

/// Share of the bytes in already-compressed files (the [`Body::Binary`]
/// kinds), for the report.
pub const COMPRESSED_SHARE: f64 = 0.70;

/// The formats of the already-compressed files.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Magic {
    Jpeg,
    Png,
    Mp4,
    Zip,
}

impl Magic {
    /// The first bytes of a file of this format.
    fn header(self) -> &'static [u8] {
        match self {
            // SOI, APP0 "JFIF" segment.
            Magic::Jpeg => b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00",
            // Signature, then the start of an IHDR chunk.
            Magic::Png => b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x04\x00\x00\x00\x03\x00\x08\x06\x00\x00\x00",
            // An `ftyp` box of 32 bytes: brand isom, compatible brands.
            Magic::Mp4 => b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
            // A local file header: version 2.0, deflated.
            Magic::Zip => b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        }
    }
}

/// The text formats.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Text {
    /// Metadata beside an upload (camera, tags, history).
    ImageJson,
    /// A collectible card.
    CardJson,
    /// A title's metadata.
    TitleJson,
    /// A title's user reviews.
    ReviewsJson,
    /// A title's web page.
    TitleHtml,
    /// A game's readme page.
    GameHtml,
    /// Upload notes, log-like lines.
    Notes,
}

/// What a kind of file holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    Binary(Magic),
    Text(Text),
}

/// One kind of file of the tree.
#[derive(Debug, Clone, Copy)]
struct Kind {
    /// Short name, also the seed of its generator.
    name: &'static str,
    body: Body,
    /// Share of the tree's bytes.
    share: f64,
    /// Smallest and largest file (log-uniform in between).
    min_bytes: u64,
    max_bytes: u64,
}

/// The kinds, already-compressed ones first; the shares add up to 1.
const KINDS: [Kind; 11] = [
    Kind {
        name: "jpeg",
        body: Body::Binary(Magic::Jpeg),
        share: 0.34,
        min_bytes: 20_000,
        max_bytes: 600_000,
    },
    Kind {
        name: "png",
        body: Body::Binary(Magic::Png),
        share: 0.12,
        min_bytes: 5_000,
        max_bytes: 400_000,
    },
    Kind {
        name: "mp4",
        body: Body::Binary(Magic::Mp4),
        share: 0.14,
        min_bytes: 2_000_000,
        max_bytes: 40_000_000,
    },
    Kind {
        name: "zip",
        body: Body::Binary(Magic::Zip),
        share: 0.10,
        min_bytes: 200_000,
        max_bytes: 15_000_000,
    },
    Kind {
        name: "image-json",
        body: Body::Text(Text::ImageJson),
        share: 0.012,
        min_bytes: 900,
        max_bytes: 5_000,
    },
    Kind {
        name: "card-json",
        body: Body::Text(Text::CardJson),
        share: 0.014,
        min_bytes: 1_000,
        max_bytes: 8_000,
    },
    Kind {
        name: "title-json",
        body: Body::Text(Text::TitleJson),
        share: 0.06,
        min_bytes: 4_000,
        max_bytes: 60_000,
    },
    Kind {
        name: "reviews-json",
        body: Body::Text(Text::ReviewsJson),
        share: 0.06,
        min_bytes: 10_000,
        max_bytes: 120_000,
    },
    Kind {
        name: "title-html",
        body: Body::Text(Text::TitleHtml),
        share: 0.10,
        min_bytes: 8_000,
        max_bytes: 150_000,
    },
    Kind {
        name: "game-html",
        body: Body::Text(Text::GameHtml),
        share: 0.014,
        min_bytes: 4_000,
        max_bytes: 60_000,
    },
    Kind {
        name: "notes",
        body: Body::Text(Text::Notes),
        share: 0.04,
        min_bytes: 2_000,
        max_bytes: 200_000,
    },
];

/// What a generated (or listed) tree holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Directories below the root.
    pub dirs: u64,
    /// Bytes of all files.
    pub bytes: u64,
    /// Bytes of the already-compressed files.
    pub compressed_bytes: u64,
}

/// The tree for `size_mb` megabytes (10^6 bytes) in `parent`, and its stamp.
pub fn tree_paths(parent: &Path, size_mb: u64) -> (PathBuf, PathBuf) {
    (
        parent.join(format!("media-{size_mb}mb")),
        parent.join(format!("media-{size_mb}mb.done")),
    )
}

/// The stats of the kept tree of that size, when its stamp says it is
/// complete and made by this version of the generator.
pub fn kept(parent: &Path, size_mb: u64) -> Option<TreeStats> {
    let (tree, stamp) = tree_paths(parent, size_mb);
    let v: Value = serde_json::from_str(&fs::read_to_string(stamp).ok()?).ok()?;
    if v["version"].as_u64() != Some(GENERATOR_VERSION)
        || v["size_mb"].as_u64() != Some(size_mb)
        || !tree.is_dir()
    {
        return None;
    }
    Some(TreeStats {
        files: v["files"].as_u64()?,
        dirs: v["dirs"].as_u64()?,
        bytes: v["bytes"].as_u64()?,
        compressed_bytes: v["compressed_bytes"].as_u64()?,
    })
}

/// Generate the tree of `size_mb` megabytes in `parent`, replacing any
/// tree there (of any size: one is kept at a time, they are big).
pub fn generate(parent: &Path, size_mb: u64) -> Result<(TreeStats, Duration)> {
    let start = Instant::now();
    fs::create_dir_all(parent).with_context(|| format!("cannot create '{}'", parent.display()))?;
    remove_trees(parent)?;
    let (tree, stamp) = tree_paths(parent, size_mb);
    fs::create_dir(&tree).with_context(|| format!("cannot create '{}'", tree.display()))?;

    let total = size_mb * 1_000_000;
    let mut generator = Generator {
        root: tree.clone(),
        made_dirs: HashSet::new(),
        buf: vec![0; WRITE_BUFFER],
        text: String::new(),
        stats: TreeStats::default(),
    };
    for kind in &KINDS {
        generator.kind(kind, (total as f64 * kind.share) as u64)?;
    }
    let stats = generator.stats;
    let text = json!({
        "version": GENERATOR_VERSION,
        "size_mb": size_mb,
        "files": stats.files,
        "dirs": stats.dirs,
        "bytes": stats.bytes,
        "compressed_bytes": stats.compressed_bytes,
    });
    fs::write(&stamp, format!("{text}\n"))
        .with_context(|| format!("cannot write the stamp '{}'", stamp.display()))?;
    Ok((stats, start.elapsed()))
}

/// Remove every tree and stamp in `parent` (`media-*`).
fn remove_trees(parent: &Path) -> Result<()> {
    let entries =
        fs::read_dir(parent).with_context(|| format!("cannot read '{}'", parent.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot read '{}'", parent.display()))?;
        if !e.file_name().to_string_lossy().starts_with("media-") {
            continue;
        }
        let path = e.path();
        let result = if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.with_context(|| format!("cannot remove the old tree '{}'", path.display()))?;
    }
    Ok(())
}

/// xorshift64*: fast, good enough for incompressible bytes and choices.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; zero is avoided by mixing).
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A size between `min` and `max`, log-uniform (small ones common).
    fn log_uniform(&mut self, min: u64, max: u64) -> u64 {
        let (lo, hi) = ((min as f64).ln(), (max as f64).ln());
        ((lo + self.unit() * (hi - lo)).exp() as u64).clamp(min, max)
    }

    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// splitmix64's finaliser: a well-spread hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seed from a name (FNV-1a).
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Months of uploads: 2015-01 to 2024-12.
const UPLOAD_MONTHS: u64 = 120;
/// Card sets.
const CARD_SETS: u64 = 40;
/// Game genres (directories under `games/`).
const GENRES: [&str; 8] = [
    "puzzle",
    "strategy",
    "family",
    "party",
    "racing",
    "arcade",
    "cards",
    "adventure",
];

/// `uploads/YYYY/MM` of upload number `n` (the same for its image, its
/// metadata and its video of the same number).
fn upload_dir(n: u64) -> String {
    let m = mix(n ^ seed_of("uploads")) % UPLOAD_MONTHS;
    format!("uploads/{}/{:02}", 2015 + m / 12, m % 12 + 1)
}

/// `cards/setNNN` of card number `n`.
fn card_dir(n: u64) -> String {
    format!("cards/set{:03}", mix(n ^ seed_of("cards")) % CARD_SETS)
}

/// `games/GENRE/SLUG` (no extension) of game number `n`.
fn game_stem(n: u64) -> String {
    let h = mix(n ^ seed_of("games"));
    let genre = GENRES[(h % GENRES.len() as u64) as usize];
    let a = WORDS[((h >> 8) % WORDS.len() as u64) as usize];
    let b = WORDS[((h >> 24) % WORDS.len() as u64) as usize];
    format!("games/{genre}/{a}-{b}-{n:04}")
}

/// The relative path of file number `n` of a kind.
fn file_path(body: Body, n: u64) -> String {
    match body {
        Body::Binary(Magic::Jpeg) => format!("{}/IMG_{n:06}.jpg", upload_dir(n)),
        Body::Binary(Magic::Mp4) => format!("{}/VID_{n:06}.mp4", upload_dir(n)),
        // Every third PNG is a title's cover, the others are cards.
        Body::Binary(Magic::Png) if n.is_multiple_of(3) => format!("titles/{:05}/cover.png", n / 3),
        Body::Binary(Magic::Png) => format!("{}/card_{n:05}.png", card_dir(n)),
        Body::Binary(Magic::Zip) => format!("{}.zip", game_stem(n)),
        Body::Text(Text::ImageJson) => format!("{}/IMG_{n:06}.json", upload_dir(n)),
        Body::Text(Text::CardJson) => format!("{}/card_{n:05}.json", card_dir(n)),
        Body::Text(Text::TitleJson) => format!("titles/{n:05}/meta.json"),
        Body::Text(Text::ReviewsJson) => format!("titles/{n:05}/reviews.json"),
        Body::Text(Text::TitleHtml) => format!("titles/{n:05}/index.html"),
        Body::Text(Text::GameHtml) => format!("{}.html", game_stem(n)),
        Body::Text(Text::Notes) => format!("{}/notes_{n:05}.txt", upload_dir(n)),
    }
}

/// The state of one generation.
struct Generator {
    root: PathBuf,
    /// Directories already created (relative).
    made_dirs: HashSet<String>,
    /// The write buffer for binary files.
    buf: Vec<u8>,
    /// The buffer for text files.
    text: String,
    stats: TreeStats,
}

impl Generator {
    /// Generate files of `kind` until `budget` bytes are written.
    fn kind(&mut self, kind: &Kind, budget: u64) -> Result<()> {
        let mut sizes = Rng::new(seed_of(kind.name));
        let mut left = budget;
        let mut n = 0u64;
        while left > 0 {
            let size = sizes.log_uniform(kind.min_bytes, kind.max_bytes).min(left);
            let rel = file_path(kind.body, n);
            let mut rng = Rng::new(seed_of(kind.name) ^ mix(n));
            let written = match kind.body {
                Body::Binary(magic) => self.binary(&rel, magic, size, &mut rng)?,
                Body::Text(text) => {
                    let mut content = std::mem::take(&mut self.text);
                    content.clear();
                    TextGen { rng: &mut rng }.write(text, n, size as usize, &mut content);
                    let result = self.write_file(&rel, |f| f.write_all(content.as_bytes()));
                    let len = content.len() as u64;
                    self.text = content;
                    result?;
                    len
                }
            };
            if matches!(kind.body, Body::Binary(_)) {
                self.stats.compressed_bytes += written;
            }
            self.stats.files += 1;
            self.stats.bytes += written;
            left = left.saturating_sub(written);
            n += 1;
        }
        Ok(())
    }

    /// Write an already-compressed file of `size` bytes: the magic, then
    /// random bytes.
    fn binary(&mut self, rel: &str, magic: Magic, size: u64, rng: &mut Rng) -> Result<u64> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.write_file(rel, |f| {
            let mut left = size as usize;
            let mut first = true;
            while left > 0 {
                let n = left.min(buf.len());
                rng.fill(&mut buf[..n]);
                if first {
                    let h = magic.header();
                    let k = h.len().min(n);
                    buf[..k].copy_from_slice(&h[..k]);
                    first = false;
                }
                f.write_all(&buf[..n])?;
                left -= n;
            }
            Ok(())
        });
        self.buf = buf;
        result.map(|()| size)
    }

    /// Create `rel` (and its directories) and let `write` fill it.
    fn write_file(
        &mut self,
        rel: &str,
        write: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<()> {
        if let Some((dir, _)) = rel.rsplit_once('/')
            && !self.made_dirs.contains(dir)
        {
            // Count each new directory level once.
            let mut prefix = String::new();
            for part in dir.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if self.made_dirs.insert(prefix.clone()) {
                    self.stats.dirs += 1;
                }
            }
            let path = self.root.join(dir);
            fs::create_dir_all(&path)
                .with_context(|| format!("cannot create '{}'", path.display()))?;
        }
        let path = self.root.join(rel);
        let mut f =
            File::create(&path).with_context(|| format!("cannot create '{}'", path.display()))?;
        write(&mut f).with_context(|| format!("cannot write '{}'", path.display()))
    }
}

/// Words for the text files, the common ones first (they are drawn with a
/// skew towards the start, as in real text).
const WORDS: &[&str] = &[
    "the",
    "a",
    "and",
    "of",
    "to",
    "with",
    "is",
    "for",
    "in",
    "it",
    "this",
    "was",
    "on",
    "my",
    "very",
    "but",
    "not",
    "all",
    "one",
    "game",
    "set",
    "card",
    "play",
    "fun",
    "box",
    "new",
    "great",
    "kids",
    "good",
    "edition",
    "players",
    "rules",
    "board",
    "pieces",
    "level",
    "score",
    "family",
    "time",
    "round",
    "turn",
    "deck",
    "dice",
    "token",
    "quest",
    "castle",
    "dragon",
    "puzzle",
    "wooden",
    "blocks",
    "train",
    "robot",
    "plush",
    "figure",
    "rare",
    "foil",
    "starter",
    "booster",
    "strategy",
    "party",
    "racing",
    "arcade",
    "adventure",
    "classic",
    "retro",
    "vintage",
    "limited",
    "collector",
    "sealed",
    "mint",
    "complete",
    "missing",
    "manual",
    "cartridge",
    "console",
    "expansion",
    "cooperative",
    "minutes",
    "ages",
    "hours",
    "easy",
    "hard",
    "quick",
    "long",
    "again",
    "friends",
    "night",
    "weekend",
    "holiday",
    "gift",
    "birthday",
    "price",
    "shipping",
    "condition",
    "painted",
    "colour",
    "colours",
    "small",
    "large",
    "little",
    "big",
    "first",
    "last",
    "best",
    "favourite",
    "recommend",
    "love",
    "liked",
    "enjoyed",
    "would",
    "could",
    "should",
    "really",
    "quite",
    "bit",
    "lot",
    "more",
    "less",
    "than",
    "after",
    "before",
    "because",
    "while",
    "when",
    "where",
    "every",
    "some",
    "many",
    "few",
    "each",
    "other",
    "same",
    "different",
    "older",
    "younger",
    "learn",
    "teach",
    "win",
    "lose",
    "draw",
    "trade",
    "build",
    "collect",
    "explore",
    "defend",
    "attack",
    "card's",
    "tile",
    "meeple",
    "map",
    "island",
    "forest",
    "mountain",
    "river",
    "city",
    "village",
    "kingdom",
    "empire",
];

/// Syllables for made-up names (people, publishers, cards).
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "zen", "tor", "bel", "quin", "ra", "vo", "sha", "dor", "el", "fi", "gan",
    "hu", "ish", "jo", "kel", "mar", "nu", "or", "pe", "sto", "wyn",
];

/// Writes one text file from a random generator.
struct TextGen<'a> {
    rng: &'a mut Rng,
}

impl TextGen<'_> {
    /// Append a file of `text` kind number `n`, of about `size` bytes.
    fn write(&mut self, text: Text, n: u64, size: usize, out: &mut String) {
        match text {
            Text::ImageJson => self.image_json(n, size, out),
            Text::CardJson => self.card_json(n, size, out),
            Text::TitleJson => self.title_json(n, size, out),
            Text::ReviewsJson => self.reviews_json(n, size, out),
            Text::TitleHtml => self.html(n, size, "title", out),
            Text::GameHtml => self.html(n, size, "game", out),
            Text::Notes => self.notes(n, size, out),
        }
    }

    /// A word, the common ones more often.
    fn word(&mut self) -> &'static str {
        let u = self.rng.unit();
        WORDS[((u * u * u) * WORDS.len() as f64) as usize % WORDS.len()]
    }

    /// A made-up name: two or three syllables, capitalised.
    fn name(&mut self, out: &mut String) {
        let k = 2 + self.rng.below(2);
        let start = out.len();
        for _ in 0..k {
            out.push_str(SYLLABLES[self.rng.below(SYLLABLES.len() as u64) as usize]);
        }
        if let Some(c) = out[start..].chars().next() {
            out.replace_range(start..start + 1, &c.to_ascii_uppercase().to_string());
        }
    }

    /// A sentence of 5 to 20 words, capitalised, with a full stop.
    fn sentence(&mut self, out: &mut String) {
        let k = 5 + self.rng.below(16);
        let start = out.len();
        for i in 0..k {
            if i > 0 {
                out.push(' ');
            }
            let w = self.word();
            out.push_str(w);
        }
        if let Some(c) = out[start..].chars().next() {
            out.replace_range(start..start + 1, &c.to_ascii_uppercase().to_string());
        }
        out.push('.');
    }

    /// A paragraph of 2 to 6 sentences.
    fn paragraph(&mut self, out: &mut String) {
        let k = 2 + self.rng.below(5);
        for i in 0..k {
            if i > 0 {
                out.push(' ');
            }
            self.sentence(out);
        }
    }

    /// A date-time between 2015 and 2024, ISO 8601.
    fn timestamp(&mut self, out: &mut String) {
        let r = self.rng.next();
        let _ = write!(
            out,
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            2015 + r % 10,
            (r >> 8) % 12 + 1,
            (r >> 16) % 28 + 1,
            (r >> 24) % 24,
            (r >> 32) % 60,
            (r >> 40) % 60
        );
    }

    /// A JSON array of 1 to 6 words.
    fn tags(&mut self, out: &mut String) {
        out.push('[');
        for i in 0..1 + self.rng.below(6) {
            if i > 0 {
                out.push_str(", ");
            }
            let w = self.word();
            let _ = write!(out, "\"{w}\"");
        }
        out.push(']');
    }

    /// Metadata of an uploaded image, with a viewing history to `size`.
    fn image_json(&mut self, n: u64, size: usize, out: &mut String) {
        let r = self.rng.next();
        let _ = write!(
            out,
            "{{\n  \"file\": \"IMG_{n:06}.jpg\",\n  \"width\": {},\n  \"height\": {},\n  \"camera\": \"",
            640 + r % 3400,
            480 + (r >> 16) % 2600
        );
        self.name(out);
        out.push_str(" X");
        let _ = write!(out, "{}\",\n  \"taken\": \"", (r >> 32) % 90 + 10);
        self.timestamp(out);
        let _ = write!(
            out,
            "\",\n  \"uploader\": {{\"id\": {}, \"name\": \"",
            (r >> 40) % 60_000
        );
        self.name(out);
        out.push_str("\"},\n  \"tags\": ");
        self.tags(out);
        out.push_str(",\n  \"caption\": \"");
        self.sentence(out);
        out.push_str("\",\n  \"history\": [");
        let mut first = true;
        while out.len() + 4 < size || first {
            let _ = write!(out, "{}\n    {{\"at\": \"", if first { "" } else { "," });
            self.timestamp(out);
            let actions = ["viewed", "liked", "shared", "resized", "tagged"];
            let a = actions[self.rng.below(actions.len() as u64) as usize];
            let _ = write!(
                out,
                "\", \"action\": \"{a}\", \"by\": {}}}",
                self.rng.below(60_000)
            );
            first = false;
        }
        out.push_str("\n  ]\n}\n");
    }

    /// A collectible card, with its price history to `size`.
    fn card_json(&mut self, n: u64, size: usize, out: &mut String) {
        let rarities = ["common", "uncommon", "rare", "mythic", "promo"];
        let rarity = rarities[self.rng.below(rarities.len() as u64) as usize];
        let _ = write!(out, "{{\n  \"id\": {n},\n  \"name\": \"");
        self.name(out);
        let _ = write!(
            out,
            "\",\n  \"set\": \"set{:03}\",\n  \"rarity\": \"{rarity}\",\n  \"text\": \"",
            mix(n ^ seed_of("cards")) % CARD_SETS
        );
        self.sentence(out);
        out.push_str("\",\n  \"flavor\": \"");
        self.sentence(out);
        out.push_str("\",\n  \"prices\": [");
        let mut first = true;
        while out.len() + 4 < size || first {
            let _ = write!(out, "{}\n    {{\"date\": \"", if first { "" } else { "," });
            self.timestamp(out);
            let cents = self.rng.below(20_000);
            let _ = write!(
                out,
                "\", \"eur\": {}.{:02}, \"offers\": {}}}",
                cents / 100,
                cents % 100,
                self.rng.below(300)
            );
            first = false;
        }
        out.push_str("\n  ]\n}\n");
    }

    /// A title's metadata, with editions to `size`.
    fn title_json(&mut self, n: u64, size: usize, out: &mut String) {
        let _ = write!(out, "{{\n  \"id\": {n},\n  \"title\": \"");
        self.name(out);
        out.push(' ');
        self.name(out);
        out.push_str("\",\n  \"publisher\": \"");
        self.name(out);
        let r = self.rng.next();
        let _ = write!(
            out,
            " Games\",\n  \"players\": {{\"min\": {}, \"max\": {}}},\n  \"age\": {},\n  \"tags\": ",
            1 + r % 2,
            2 + (r >> 8) % 7,
            6 + (r >> 16) % 12
        );
        self.tags(out);
        out.push_str(",\n  \"description\": \"");
        self.paragraph(out);
        out.push_str("\",\n  \"editions\": [");
        let mut first = true;
        while out.len() + 4 < size || first {
            let _ = write!(
                out,
                "{}\n    {{\"year\": {}, \"language\": \"{}\", \"released\": \"",
                if first { "" } else { "," },
                1990 + self.rng.below(35),
                ["en", "de", "fr", "it", "es", "nl"][self.rng.below(6) as usize]
            );
            self.timestamp(out);
            out.push_str("\", \"notes\": \"");
            self.sentence(out);
            out.push_str("\"}");
            first = false;
        }
        out.push_str("\n  ]\n}\n");
    }

    /// A title's reviews, to `size`.
    fn reviews_json(&mut self, n: u64, size: usize, out: &mut String) {
        let _ = write!(out, "{{\n  \"title_id\": {n},\n  \"reviews\": [");
        let mut first = true;
        while out.len() + 4 < size || first {
            let _ = write!(
                out,
                "{}\n    {{\"user\": {}, \"score\": {}, \"date\": \"",
                if first { "" } else { "," },
                self.rng.below(60_000),
                1 + self.rng.below(5)
            );
            self.timestamp(out);
            out.push_str("\", \"text\": \"");
            self.paragraph(out);
            let _ = write!(out, "\", \"helpful\": {}}}", self.rng.below(50));
            first = false;
        }
        out.push_str("\n  ]\n}\n");
    }

    /// A web page for a title or a game, with sections to `size`.
    fn html(&mut self, n: u64, size: usize, what: &str, out: &mut String) {
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <link rel=\"stylesheet\" href=\"/static/site.css\">\n<title>"
        );
        self.name(out);
        let _ = write!(
            out,
            " - Toybox</title>\n</head>\n<body class=\"{what}\" data-id=\"{n}\">\n\
             <nav><a href=\"/\">Home</a> <a href=\"/titles/\">Titles</a> \
             <a href=\"/cards/\">Cards</a> <a href=\"/games/\">Games</a></nav>\n<main>\n<h1>"
        );
        self.name(out);
        out.push_str("</h1>\n");
        let closing = "</main>\n<footer>Toybox</footer>\n</body>\n</html>\n";
        while out.len() + closing.len() < size {
            out.push_str("<section class=\"block\">\n<h2>");
            self.sentence(out);
            out.push_str("</h2>\n<p>");
            self.paragraph(out);
            out.push_str("</p>\n<ul>");
            for _ in 0..1 + self.rng.below(4) {
                out.push_str("<li>");
                self.sentence(out);
                out.push_str("</li>");
            }
            out.push_str("</ul>\n</section>\n");
        }
        out.push_str(closing);
    }

    /// Log-like upload notes, to `size`.
    fn notes(&mut self, n: u64, size: usize, out: &mut String) {
        let levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG"];
        while out.len() < size {
            self.timestamp(out);
            let level = levels[self.rng.below(levels.len() as u64) as usize];
            let _ = write!(
                out,
                " {level} upload user={} file={}/IMG_{:06}.jpg bytes={} ms={} ",
                self.rng.below(60_000),
                upload_dir(n),
                self.rng.below(1_000_000),
                20_000 + self.rng.below(600_000),
                self.rng.below(2_000)
            );
            self.sentence(out);
            out.push('\n');
        }
    }
}

/// The kind of file a name says (as the generator names them): the
/// already-compressed kinds by extension, the text kinds by name.
fn body_of(rel: &Path) -> Body {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = rel
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" => Body::Binary(Magic::Jpeg),
        "png" => Body::Binary(Magic::Png),
        "mp4" => Body::Binary(Magic::Mp4),
        "zip" => Body::Binary(Magic::Zip),
        "json" if name == "reviews.json" => Body::Text(Text::ReviewsJson),
        "json" if name == "meta.json" => Body::Text(Text::TitleJson),
        "json" if name.starts_with("IMG_") => Body::Text(Text::ImageJson),
        "json" => Body::Text(Text::CardJson),
        "html" if name == "index.html" => Body::Text(Text::TitleHtml),
        "html" => Body::Text(Text::GameHtml),
        _ => Body::Text(Text::Notes),
    }
}

/// True when a file of that name holds already-compressed bytes (JPEG,
/// PNG, MP4, ZIP).
pub fn is_compressed_kind(rel: &Path) -> bool {
    matches!(body_of(rel), Body::Binary(_))
}

/// Exactly `size` bytes of content of the kind the name `rel` says, from
/// `seed`: the format's magic then random bytes for the already-compressed
/// kinds, text of that kind (cut, or padded with newlines, to `size`) for
/// the others. For making other trees of the same kinds and for rewriting
/// files of a tree with new content (the `incr` benchmark); the generated
/// media tree itself does not use it.
pub fn content_like(rel: &Path, size: u64, seed: u64, out: &mut Vec<u8>) {
    let size = size as usize;
    let mut rng = Rng::new(seed);
    out.clear();
    match body_of(rel) {
        Body::Binary(magic) => {
            out.resize(size, 0);
            rng.fill(out);
            let h = magic.header();
            let k = h.len().min(size);
            out[..k].copy_from_slice(&h[..k]);
        }
        Body::Text(text) => {
            let mut s = String::with_capacity(size + 2_000);
            let n = rng.below(100_000);
            TextGen { rng: &mut rng }.write(text, n, size, &mut s);
            out.extend_from_slice(s.as_bytes());
            out.resize(size, b'\n');
        }
    }
}

/// A size between `min` and `max` from `seed`, log-uniform (small ones
/// common), as the generator draws them.
pub fn size_between(seed: u64, min: u64, max: u64) -> u64 {
    Rng::new(seed).log_uniform(min, max)
}

/// One entry of a listed tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry {
    /// A directory and its permission bits.
    Dir { mode: u32 },
    /// A regular file, its permission bits and size.
    File { mode: u32, size: u64 },
    /// Anything else (symlink, FIFO, device...).
    Other,
}

/// Every entry below a root (the root itself excluded), by relative path.
pub type Listing = BTreeMap<PathBuf, Entry>;

/// List the tree under `root`. With `read_files`, also read every file
/// once (the warm-up: its pages are then in the page cache).
pub fn list(root: &Path, read_files: bool) -> Result<(Listing, TreeStats)> {
    let mut listing = Listing::new();
    let mut stats = TreeStats::default();
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot read '{}'", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read '{}'", dir.display()))?;
            let path = e.path();
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot stat '{}'", path.display()))?;
            let mode = meta.permissions().mode() & 0o7777;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let entry = if meta.is_dir() {
                stats.dirs += 1;
                stack.push(path);
                Entry::Dir { mode }
            } else if meta.is_file() {
                stats.files += 1;
                stats.bytes += meta.size();
                if read_files {
                    let mut f = File::open(&path)
                        .with_context(|| format!("cannot open '{}'", path.display()))?;
                    while f
                        .read(&mut buf)
                        .with_context(|| format!("cannot read '{}'", path.display()))?
                        > 0
                    {}
                }
                Entry::File {
                    mode,
                    size: meta.size(),
                }
            } else {
                Entry::Other
            };
            listing.insert(rel, entry);
        }
    }
    Ok((listing, stats))
}

/// The first difference between a source listing and a restored one, in
/// words; `None` when they hold the same entries.
pub fn first_difference(source: &Listing, restored: &Listing) -> Option<String> {
    for (path, want) in source {
        match restored.get(path) {
            None => return Some(format!("'{}' is missing", path.display())),
            Some(got) if got != want => {
                return Some(format!(
                    "'{}' differs: {got:?} instead of {want:?}",
                    path.display()
                ));
            }
            Some(_) => {}
        }
    }
    restored
        .keys()
        .find(|p| !source.contains_key(*p))
        .map(|p| format!("'{}' is not in the source", p.display()))
}

/// Check that the tree's listing matches what its stamp recorded.
pub fn check_kept(stamp: &TreeStats, listed: &TreeStats) -> Result<()> {
    if stamp.files != listed.files || stamp.dirs != listed.dirs || stamp.bytes != listed.bytes {
        bail!(
            "the kept tree changed since it was generated ({} files, {} dirs, {} bytes; now {}, {}, {}): run with --fresh",
            stamp.files,
            stamp.dirs,
            stamp.bytes,
            listed.files,
            listed.dirs,
            listed.bytes
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_seventy_percent_is_compressed() {
        let total: f64 = KINDS.iter().map(|k| k.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let compressed: f64 = KINDS
            .iter()
            .filter(|k| matches!(k.body, Body::Binary(_)))
            .map(|k| k.share)
            .sum();
        assert!((compressed - COMPRESSED_SHARE).abs() < 1e-9);
    }

    #[test]
    fn random_bytes_do_not_compress_and_text_does() {
        let mut rng = Rng::new(1);
        let mut bin = vec![0u8; 256 << 10];
        rng.fill(&mut bin);
        let mut text = String::new();
        TextGen { rng: &mut rng }.write(Text::ReviewsJson, 7, 256 << 10, &mut text);
        let gz = |data: &[u8]| {
            let mut child = std::process::Command::new("gzip")
                .arg("-c")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let data = data.to_vec();
            let feeder = std::thread::spawn(move || stdin.write_all(&data).unwrap());
            let out = child.wait_with_output().unwrap();
            feeder.join().unwrap();
            out.stdout.len() as f64
        };
        assert!(gz(&bin) > bin.len() as f64 * 0.99);
        let ratio = gz(text.as_bytes()) / text.len() as f64;
        assert!(ratio > 0.15 && ratio < 0.5, "text compresses to {ratio}");
    }

    #[test]
    fn text_files_are_valid_json_of_about_the_size_asked() {
        for (text, size) in [
            (Text::ImageJson, 900),
            (Text::CardJson, 5_000),
            (Text::TitleJson, 30_000),
            (Text::ReviewsJson, 50_000),
        ] {
            let mut out = String::new();
            TextGen {
                rng: &mut Rng::new(3),
            }
            .write(text, 1, size, &mut out);
            let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(v.is_object());
            assert!(out.len() >= size && out.len() < size + 2_000, "{text:?}");
        }
    }

    #[test]
    fn content_like_has_the_size_and_kind_asked() {
        let mut out = Vec::new();
        content_like(
            Path::new("uploads/2020/01/IMG_000001.jpg"),
            5_000,
            1,
            &mut out,
        );
        assert_eq!(out.len(), 5_000);
        assert!(out.starts_with(b"\xff\xd8\xff\xe0"));
        assert!(is_compressed_kind(Path::new("a/VID_000001.mp4")));
        let mut again = Vec::new();
        content_like(
            Path::new("uploads/2020/01/IMG_000001.jpg"),
            5_000,
            2,
            &mut again,
        );
        assert_ne!(out, again);
        for (name, size) in [
            ("titles/00001/meta.json", 300),
            ("x/notes_00001.txt", 9_000),
        ] {
            content_like(Path::new(name), size, 3, &mut out);
            assert_eq!(out.len() as u64, size, "{name}");
            assert!(out.is_ascii(), "{name}");
            assert!(!is_compressed_kind(Path::new(name)));
        }
        let s = size_between(7, 200, 4_096);
        assert!((200..=4_096).contains(&s));
        assert_eq!(s, size_between(7, 200, 4_096));
    }

    #[test]
    fn a_small_tree_is_generated_deterministically_and_listed() {
        let d = tempfile::tempdir().unwrap();
        let (a, _) = generate(&d.path().join("a"), 3).unwrap();
        let (b, _) = generate(&d.path().join("b"), 3).unwrap();
        assert_eq!(a, b);
        assert!(a.bytes >= 3_000_000 && a.bytes < 3_100_000, "{a:?}");
        let share = a.compressed_bytes as f64 / a.bytes as f64;
        assert!((share - COMPRESSED_SHARE).abs() < 0.02, "{share}");
        assert_eq!(kept(&d.path().join("a"), 3), Some(a));
        assert_eq!(kept(&d.path().join("a"), 4), None);

        let (tree_a, _) = tree_paths(&d.path().join("a"), 3);
        let (tree_b, _) = tree_paths(&d.path().join("b"), 3);
        let (la, sa) = list(&tree_a, true).unwrap();
        let (lb, _) = list(&tree_b, false).unwrap();
        check_kept(&a, &sa).unwrap();
        assert_eq!(first_difference(&la, &lb), None);
        let jpeg = la
            .keys()
            .find(|p| p.extension().is_some_and(|e| e == "jpg"))
            .unwrap();
        let head = fs::read(tree_a.join(jpeg)).unwrap();
        assert!(head.starts_with(b"\xff\xd8\xff\xe0"));
        fs::remove_file(tree_b.join(jpeg)).unwrap();
        let (lb, _) = list(&tree_b, false).unwrap();
        assert!(first_difference(&la, &lb).unwrap().contains("missing"));

        // Generating again replaces the tree (one size kept at a time).
        generate(&d.path().join("a"), 2).unwrap();
        assert_eq!(kept(&d.path().join("a"), 3), None);
        assert!(kept(&d.path().join("a"), 2).is_some());
    }
}
