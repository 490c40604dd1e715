//! `.npy` files: the white-noise input and the array outputs (positions, velocities, density);
//! Gadget-format HDF5 snapshots in [`gadget`]; writing any file whole ([`write_atomic`]).
//!
//! The NumPy format (<https://numpy.org/neps/nep-0001-npy-format.html>) is read and written
//! here by hand, so that every way a file can be wrong gets its own one-line error naming the
//! file: not found, not a `.npy`, wrong dtype, Fortran order, wrong shape, truncated data,
//! NaN/Inf values. Versions 1.0, 2.0 and 3.0 are read; 1.0 is written (2.0 when the header
//! would not fit, which never happens for the shapes written here), header padded to 64 bytes
//! as NumPy does. Data are always C order; either byte order is read, little-endian written.
//!
//! ```
//! # use pm_core::io::{read_npy, write_npy_f32};
//! let path = std::env::temp_dir().join(format!("pm-core-io-doc-{}.npy", std::process::id()));
//! write_npy_f32(&path, &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
//! let (shape, data) = read_npy(&path).unwrap();
//! assert_eq!(shape, vec![2, 3]);
//! assert_eq!(data[5], 5.0);
//! # std::fs::remove_file(&path).ok();
//! ```

use crate::error::{Error, Result};
use crate::float::Real;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod gadget;
pub mod pk_table;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The header of a `.npy` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The dtype descriptor as written, e.g. `<f4`, or `structured dtype` for a record type.
    pub descr: String,
    /// Whether the data are in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data in the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// The float element type, if the dtype is float32 or float64 (either byte order).
    fn float_type(&self) -> Option<(usize, bool)> {
        let d = self.descr.as_bytes();
        let (order, rest) = match d.first() {
            Some(b'<') => (Some(false), &d[1..]),
            Some(b'>') => (Some(true), &d[1..]),
            Some(b'=') => (None, &d[1..]),
            _ => (None, d),
        };
        let big = order.unwrap_or(cfg!(target_endian = "big"));
        match rest {
            b"f4" => Some((4, big)),
            b"f8" => Some((8, big)),
            _ => None,
        }
    }

    /// Number of elements (product of the shape), `None` on overflow.
    fn len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
    }
}

/// Formats a shape the way NumPy prints it: `()`, `(5,)`, `(64, 64, 64)`.
pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Reads a white-noise field from a `.npy` of shape `(n, n, n)`, C order, dtype float32 or
/// float64 (converted to `T`; float64 → f32 rounds to nearest), returned flat in C order
/// (`[ix][iy][iz]`, physics.md). Every problem is one line naming the file: missing file,
/// not a `.npy` ([`Error::File`]); wrong dtype, Fortran order or wrong shape
/// ([`Error::Shape`]); truncated data ([`Error::File`]); a NaN or infinite value
/// ([`Error::NonFinite`], naming the first bad index); a float64 value beyond the f32 range
/// when `T` is f32 ([`Error::File`], suggesting `run.precision = "f64"`).
pub fn read_white_noise<T: Real>(path: &Path, n: usize) -> Result<Vec<T>> {
    let what = format!("white noise file {}", path.display());
    let (bytes, header) = read_file_and_header(path)?;
    check_float_c_order(&header, &what)?;
    if header.shape != [n, n, n] {
        return Err(Error::Shape {
            what,
            found: format!("shape {}", shape_string(&header.shape)),
            expected: format!("shape {} = (box.particles,)*3", shape_string(&[n, n, n])),
        });
    }
    let data: Vec<T> = decode(path, &bytes, &header)?;
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        let (ix, iy, iz) = (i / (n * n), (i / n) % n, i % n);
        // A finite float64 that overflowed the conversion to f32 is not bad data: say so.
        if std::mem::size_of::<T>() < 8 && header.float_type().is_some_and(|(size, _)| size == 8) {
            let wide: Vec<f64> = decode(path, &bytes, &header)?;
            if wide[i].is_finite() {
                return Err(Error::file(
                    path,
                    format!(
                        "white noise value {:e} at index [{ix}, {iy}, {iz}] (flat {i}) does not fit in f32 \
                         (|w| <= {:e}); set run.precision = \"f64\" or rescale the file",
                        wide[i],
                        f32::MAX
                    ),
                ));
            }
        }
        return Err(Error::NonFinite {
            what,
            detail: format!(
                "value {} at index [{ix}, {iy}, {iz}] (flat {i}); white noise must be finite",
                data[i]
            ),
        });
    }
    Ok(data)
}

/// Reads any float32 or float64 C-order `.npy`, returning its shape and its data widened to
/// `f64`, flat in C order. Errors as in [`read_white_noise`] (no finiteness check here).
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    let what = format!(".npy file {}", path.display());
    let (bytes, header) = read_file_and_header(path)?;
    check_float_c_order(&header, &what)?;
    let data = decode(path, &bytes, &header)?;
    Ok((header.shape, data))
}

/// Reads only the header of a `.npy` file (dtype, order, shape), e.g. to check a shape before
/// reading a large file.
pub fn read_npy_header(path: &Path) -> Result<NpyHeader> {
    use std::io::Read;
    refuse_special_file(path, ".npy input", "a .npy file")?;
    let mut f = std::fs::File::open(path).map_err(|e| open_error(path, e))?;
    let mut pre = [0u8; 12];
    let got = read_up_to(&mut f, &mut pre).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let (len, start) = preamble(path, &pre[..got])?;
    let mut head = vec![0u8; start + len];
    head[..got].copy_from_slice(&pre[..got]);
    if start + len > got {
        f.read_exact(&mut head[got..])
            .map_err(|_| not_npy(path, "file ends inside the header"))?;
    }
    parse_header(path, &head, len, start)
}

/// Writes `data` (C order) as a float32 `.npy` of the given shape.
///
/// # Panics
/// If `data.len()` is not the product of `shape` (a caller bug).
#[track_caller]
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_npy(path, shape, data, "<f4", |x, buf| buf.extend_from_slice(&x.to_le_bytes()))
}

/// Writes `data` (C order) as a float64 `.npy` of the given shape.
///
/// # Panics
/// If `data.len()` is not the product of `shape` (a caller bug).
#[track_caller]
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    write_npy(path, shape, data, "<f8", |x, buf| buf.extend_from_slice(&x.to_le_bytes()))
}

/// Writes `data` of a [`Real`] type as a `.npy` of that type (`<f4` or `<f8`).
///
/// # Panics
/// If `data.len()` is not the product of `shape` (a caller bug).
#[track_caller]
pub fn write_npy_real<T: Real>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    if T::NAME == "f32" {
        write_npy(path, shape, data, "<f4", |x, buf| {
            buf.extend_from_slice(&(x.f64() as f32).to_le_bytes())
        })
    } else {
        write_npy(path, shape, data, "<f8", |x, buf| buf.extend_from_slice(&x.f64().to_le_bytes()))
    }
}

#[track_caller]
fn write_npy<E: Copy>(path: &Path, shape: &[usize], data: &[E], descr: &str, put: impl Fn(E, &mut Vec<u8>)) -> Result<()> {
    let len: usize = shape.iter().product();
    assert_eq!(
        data.len(),
        len,
        "write_npy: {} values for shape {}",
        data.len(),
        shape_string(shape)
    );
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}", shape_string(shape));
    // Preamble + dict + padding + '\n' is a multiple of 64 bytes (as NumPy writes it).
    let padded = |pre: usize| (pre + dict.len() + 1).div_ceil(64) * 64;
    // Version 1.0 stores the header length in a u16; 2.0 in a u32.
    let (version, pre) = if padded(10) - 10 <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = padded(pre);
    let hlen = total - pre;
    let mut head = Vec::with_capacity(total);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&[version, 0]);
    if version == 1 {
        head.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        head.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    head.extend_from_slice(dict.as_bytes());
    head.resize(total - 1, b' ');
    head.push(b'\n');

    write_atomic(path, |w| {
        w.write_all(&head)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in data.chunks(8192) {
            buf.clear();
            for &x in chunk {
                put(x, &mut buf);
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Writing whole files through a temporary sibling
// ---------------------------------------------------------------------------------------------

/// The marker in the name of a temporary sibling ([`partial_path`]).
const PARTIAL: &str = ".partial-";

/// The temporary sibling `DIR/.NAME.partial-PID.EXT` in which `DIR/NAME` is written before it is
/// renamed over `NAME` (`ext` tells an encoder that picks the format by extension what to write;
/// `tmp` otherwise).
pub fn partial_path(path: &Path, ext: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{PARTIAL}{}.{ext}", std::process::id()))
}

/// Whether `name` is the name of a temporary sibling ([`partial_path`]) of some process:
/// `.NAME.partial-PID.EXT` with PID all digits.
pub fn is_partial_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    let Some(at) = rest.rfind(PARTIAL) else { return false };
    let tail = &rest[at + PARTIAL.len()..];
    match tail.split_once('.') {
        Some((pid, ext)) => at > 0 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !ext.is_empty() && !ext.contains('.'),
        None => false,
    }
}

/// Removes the temporary siblings ([`is_partial_name`]) that an interrupted run left in `dir`
/// (regular files only); returns their paths. A missing `dir` has none.
pub fn remove_partial_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::file(dir, format!("cannot list the output directory: {e}"))),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && name.to_str().is_some_and(is_partial_name) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::file(&p, format!("cannot remove a stale temporary file: {e}")))?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Moves a complete temporary file `tmp` into place: syncs it to disk, then renames it over
/// `path` (which replaces a symbolic link named `path` rather than writing through it). On
/// failure `tmp` is removed and the error names `path`.
pub fn commit_partial(tmp: &Path, path: &Path) -> Result<()> {
    let res = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(tmp, path));
    res.map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}

/// Writes a whole file: `write` fills a new temporary sibling ([`partial_path`], created
/// exclusively, buffered), which is flushed, synced and renamed over `path`. An interrupted
/// write leaves at most the temporary, never a `path` that looks complete; an existing `path`
/// (or a symbolic link named `path`) is replaced, never written through. Errors name `path`.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let tmp = partial_path(path, "tmp");
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp);
    let res = create()
        .or_else(|e| {
            // A leftover of this very pid (a reused pid): remove it (a link, not its target).
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                std::fs::remove_file(&tmp)?;
                create()
            } else {
                Err(e)
            }
        })
        .and_then(|file| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let r = write(&mut w).and_then(|_| w.flush());
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        });
    res.map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
    commit_partial(&tmp, path)
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Refuses an input path that is not an existing regular file before anything opens it: a
/// device such as `/dev/zero` would be read until memory runs out and a FIFO would block
/// forever. `what` names the input (`run.white_noise`, `--config`, ...), `expected` describes
/// the file wanted; the message is `{what}: file not found (expected {expected})`,
/// `{what}: not a regular file but a FIFO (named pipe) (expected {expected})` or
/// `{what}: cannot read: {io error}`, after the path ([`Error::File`]).
pub fn require_regular_file(path: &Path, what: &str, expected: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(Error::file(
            path,
            format!("{what}: not a regular file but {} (expected {expected})", file_kind(m.file_type())),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::file(path, format!("{what}: file not found (expected {expected})")))
        }
        Err(e) => Err(Error::file(path, format!("{what}: cannot read: {e}"))),
    }
}

/// As [`require_regular_file`] for a path that exists; a missing path is left to the caller's
/// own open error (so its "file not found" message stays as it was).
pub fn refuse_special_file(path: &Path, what: &str, expected: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => require_regular_file(path, what, expected),
        _ => Ok(()),
    }
}

/// What a non-regular file is, for messages: "a directory", "a FIFO (named pipe)", ...
fn file_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

fn open_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::file(path, "file not found"),
        _ => Error::file(path, format!("cannot read: {e}")),
    }
}

fn not_npy(path: &Path, why: &str) -> Error {
    Error::file(path, format!("not a valid .npy file: {why}"))
}

fn read_up_to(f: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

fn read_file_and_header(path: &Path) -> Result<(Vec<u8>, NpyHeader)> {
    if path.is_dir() {
        return Err(Error::file(path, "is a directory, expected a .npy file"));
    }
    refuse_special_file(path, ".npy input", "a .npy file")?;
    let bytes = std::fs::read(path).map_err(|e| open_error(path, e))?;
    let (len, start) = preamble(path, &bytes)?;
    if bytes.len() < start + len {
        return Err(not_npy(path, "file ends inside the header"));
    }
    let header = parse_header(path, &bytes, len, start)?;
    Ok((bytes, header))
}

/// Checks the magic and version; returns (header length, header start).
fn preamble(path: &Path, b: &[u8]) -> Result<(usize, usize)> {
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(not_npy(path, "no \\x93NUMPY magic at the start (write it with numpy.save)"));
    }
    if b.len() < 10 {
        return Err(not_npy(path, "file ends inside the preamble"));
    }
    match b[6] {
        1 => Ok((u16::from_le_bytes([b[8], b[9]]) as usize, 10)),
        2 | 3 => {
            if b.len() < 12 {
                return Err(not_npy(path, "file ends inside the preamble"));
            }
            Ok((u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12))
        }
        v => Err(not_npy(path, &format!("unsupported format version {v}.{}", b[7]))),
    }
}

fn parse_header(path: &Path, bytes: &[u8], len: usize, start: usize) -> Result<NpyHeader> {
    let raw = &bytes[start..start + len];
    // v1/v2 headers are latin-1, v3 UTF-8; the keys and values we accept are ASCII.
    let text: String = raw.iter().map(|&c| c as char).collect();
    let bad = |why: &str| not_npy(path, &format!("bad header {:?}: {why}", text.trim_end()));
    let dict = match Lit::parse(&text) {
        Some(Lit::Dict(d)) => d,
        _ => return Err(bad("not a Python dict literal")),
    };
    let get = |k: &str| dict.iter().find(|(key, _)| matches!(key, Lit::Str(s) if s == k)).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Lit::Str(s)) => s.clone(),
        Some(Lit::List(fields)) => format!("structured dtype ({} fields)", fields.len()),
        _ => return Err(bad("no 'descr'")),
    };
    let fortran_order = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err(bad("no 'fortran_order'")),
    };
    let shape = match get("shape") {
        Some(Lit::Tuple(items)) => items
            .iter()
            .map(|x| match x {
                Lit::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("'shape' is not a tuple of non-negative integers"))?,
        _ => return Err(bad("no 'shape' tuple")),
    };
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset: start + len,
    })
}

fn check_float_c_order(h: &NpyHeader, what: &str) -> Result<()> {
    if h.float_type().is_none() {
        return Err(Error::Shape {
            what: what.to_string(),
            found: format!("dtype {}", h.descr),
            expected: "dtype float32 or float64 in either byte order ('<f4', '>f4', '<f8' or '>f8')".to_string(),
        });
    }
    if h.fortran_order && h.shape.iter().filter(|&&n| n > 1).count() > 1 {
        return Err(Error::Shape {
            what: what.to_string(),
            found: "Fortran (column-major) order".to_string(),
            expected: "C order (save with numpy.save(path, numpy.ascontiguousarray(a)))".to_string(),
        });
    }
    Ok(())
}

fn decode<T: Real>(path: &Path, bytes: &[u8], h: &NpyHeader) -> Result<Vec<T>> {
    let (size, big) = h.float_type().expect("checked float dtype");
    let n = h.len().ok_or_else(|| not_npy(path, "shape overflows"))?;
    let need = n.checked_mul(size).ok_or_else(|| not_npy(path, "shape overflows"))?;
    let data = &bytes[h.data_offset..];
    if data.len() != need {
        return Err(not_npy(
            path,
            &format!(
                "shape {} of {} needs {need} data bytes, found {}{}",
                shape_string(&h.shape),
                h.descr,
                data.len(),
                if data.len() < need { " (truncated file?)" } else { "" }
            ),
        ));
    }
    let out = if size == 4 {
        data.chunks_exact(4)
            .map(|c| {
                let a = [c[0], c[1], c[2], c[3]];
                let x = if big { f32::from_be_bytes(a) } else { f32::from_le_bytes(a) };
                T::of(x as f64)
            })
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| {
                let a = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                T::of(if big { f64::from_be_bytes(a) } else { f64::from_le_bytes(a) })
            })
            .collect()
    };
    Ok(out)
}

/// A Python literal as found in `.npy` headers.
#[derive(Debug)]
enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

impl Lit {
    fn parse(s: &str) -> Option<Lit> {
        let mut p = LitParser { s: s.as_bytes(), i: 0 };
        let v = p.value(0)?;
        p.ws();
        (p.i == p.s.len()).then_some(v)
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Comma-separated items up to `close`, trailing comma allowed.
    fn items(&mut self, close: u8, depth: usize) -> Option<Vec<Lit>> {
        let mut v = Vec::new();
        loop {
            if self.eat(close) {
                return Some(v);
            }
            v.push(self.value(depth + 1)?);
            if !self.eat(b',') {
                return self.eat(close).then_some(v);
            }
        }
    }
    fn value(&mut self, depth: usize) -> Option<Lit> {
        if depth > 32 {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut d = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Some(Lit::Dict(d));
                    }
                    let k = self.value(depth + 1)?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value(depth + 1)?;
                    d.push((k, v));
                    if !self.eat(b',') {
                        return self.eat(b'}').then_some(Lit::Dict(d));
                    }
                }
            }
            b'(' => {
                self.i += 1;
                self.items(b')', depth).map(Lit::Tuple)
            }
            b'[' => {
                self.i += 1;
                self.items(b']', depth).map(Lit::List)
            }
            q @ (b'\'' | b'"') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let c = *self.s.get(self.i)?;
                    self.i += 1;
                    match c {
                        b'\\' => {
                            out.push(*self.s.get(self.i)? as char);
                            self.i += 1;
                        }
                        c if c == q => return Some(Lit::Str(out)),
                        c => out.push(c as char),
                    }
                }
            }
            c if c == b'-' || c.is_ascii_digit() => {
                let st = self.i;
                self.i += 1;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[st..self.i]).ok()?.parse().ok()?;
                // Python 2 long suffix, as in old files: (64L, 64L, 64L).
                if matches!(self.s.get(self.i), Some(b'L' | b'l')) {
                    self.i += 1;
                }
                Some(Lit::Int(n))
            }
            _ => {
                for (word, lit) in [("True", Lit::Bool(true)), ("False", Lit::Bool(false)), ("None", Lit::None)] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Some(lit);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmp(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        std::env::temp_dir().join(format!(
            "cosmograd-io-{tag}-{}-{}.npy",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// A raw .npy with the given header dict and data bytes (version 1 unless `v` says).
    fn raw_npy(path: &Path, v: u8, dict: &str, data: &[u8]) {
        let pre = if v == 1 { 10 } else { 12 };
        let total = (pre + dict.len() + 1).div_ceil(64) * 64;
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[v, 0]);
        if v == 1 {
            b.extend_from_slice(&((total - pre) as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&((total - pre) as u32).to_le_bytes());
        }
        b.extend_from_slice(dict.as_bytes());
        b.resize(total - 1, b' ');
        b.push(b'\n');
        b.extend_from_slice(data);
        std::fs::write(path, b).unwrap();
    }

    fn noise(n: usize) -> Vec<f64> {
        (0..n * n * n)
            .map(|i| ((i as f64) * 0.7548776662).sin() * 1.3 + 1e-9 * i as f64)
            .collect()
    }

    fn msg(e: &Error, path: &Path) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "multi-line: {s:?}");
        assert!(s.contains(&path.display().to_string()), "path missing from {s:?}");
        s
    }

    #[test]
    fn round_trip_f32_and_f64() {
        let n = 6;
        let w = noise(n);
        let p64 = tmp("rt64");
        write_npy_f64(&p64, &[n, n, n], &w).unwrap();
        assert_eq!(read_white_noise::<f64>(&p64, n).unwrap(), w);
        let as32: Vec<f32> = read_white_noise(&p64, n).unwrap();
        assert_eq!(
            as32,
            w.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            "f64 -> f32 rounds to nearest"
        );

        let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let p32 = tmp("rt32");
        write_npy_f32(&p32, &[n, n, n], &w32).unwrap();
        assert_eq!(read_white_noise::<f32>(&p32, n).unwrap(), w32);
        let wide: Vec<f64> = read_white_noise(&p32, n).unwrap();
        assert_eq!(wide, w32.iter().map(|&x| x as f64).collect::<Vec<_>>());

        // Header layout as NumPy writes it.
        let b = std::fs::read(&p32).unwrap();
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        assert_eq!(b[10 + hl - 1], b'\n');
        assert_eq!(b.len(), 10 + hl + 4 * n * n * n);
        let h = read_npy_header(&p32).unwrap();
        assert_eq!(h.descr, "<f4");
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![n, n, n]);

        // General reader, N x 3 and scalar-free 1-D shapes.
        let p = tmp("nx3");
        let pos: Vec<f32> = (0..30).map(|i| i as f32 * 0.5).collect();
        write_npy_f32(&p, &[10, 3], &pos).unwrap();
        let (shape, data) = read_npy(&p).unwrap();
        assert_eq!(shape, vec![10, 3]);
        assert_eq!(data, pos.iter().map(|&x| x as f64).collect::<Vec<_>>());
        write_npy_real::<f64>(&p, &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(read_npy(&p).unwrap(), (vec![5], vec![1.0, 2.0, 3.0, 4.0, 5.0]));
        write_npy_real::<f32>(&p, &[2], &[1.5f32, -2.0]).unwrap();
        assert_eq!(read_npy_header(&p).unwrap().descr, "<f4");
        for q in [p64, p32, p] {
            std::fs::remove_file(q).ok();
        }
    }

    #[test]
    fn agrees_with_ndarray_npy() {
        use ndarray::Array3;
        use ndarray_npy::{read_npy as nd_read, write_npy as nd_write};
        let n = 4;
        let w = noise(n);
        // Ours -> ndarray-npy.
        let p = tmp("nd1");
        write_npy_f64(&p, &[n, n, n], &w).unwrap();
        let a: Array3<f64> = nd_read(&p).unwrap();
        assert_eq!(a.shape(), &[n, n, n]);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), w);
        // ndarray-npy -> ours.
        let b = Array3::from_shape_fn((n, n, n), |(i, j, k)| (i * 100 + j * 10 + k) as f32);
        nd_write(&p, &b).unwrap();
        let r: Vec<f32> = read_white_noise(&p, n).unwrap();
        assert_eq!(r, b.iter().copied().collect::<Vec<_>>());
        assert_eq!(r[n * n + 2 * n + 3], 123.0);
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn other_versions_and_byte_orders() {
        let n = 2;
        let w = noise(n);
        let p = tmp("ver");
        let be: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
        raw_npy(&p, 2, "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2, 2), }", &be);
        assert_eq!(read_white_noise::<f64>(&p, n).unwrap(), w);
        let le: Vec<u8> = w.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
        raw_npy(
            &p,
            3,
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 2L, 2L)}",
            &le,
        );
        assert_eq!(
            read_white_noise::<f32>(&p, n).unwrap(),
            w.iter().map(|&x| x as f32).collect::<Vec<_>>()
        );
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn long_headers_use_version_2() {
        let p = tmp("v2");
        let shape = vec![1usize; 25_000];
        write_npy_f32(&p, &shape, &[3.5]).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b[6], 2);
        assert_eq!(read_npy(&p).unwrap(), (shape, vec![3.5]));
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn missing_and_invalid_files() {
        let p = tmp("missing");
        let e = read_white_noise::<f32>(&p, 4).unwrap_err();
        assert!(matches!(e, Error::File { .. }));
        assert!(msg(&e, &p).contains("file not found"));

        std::fs::write(&p, "ix iy iz w\n0 0 0 1.0\n").unwrap();
        let e = read_white_noise::<f32>(&p, 4).unwrap_err();
        assert!(matches!(e, Error::File { .. }));
        assert!(msg(&e, &p).contains("not a valid .npy"));

        std::fs::write(&p, b"\x93NUMPY\x01\x00\xff").unwrap();
        let e = read_white_noise::<f32>(&p, 4).unwrap_err();
        assert!(msg(&e, &p).contains("not a valid .npy"));

        raw_npy(&p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", &[0u8; 20]);
        let e = read_white_noise::<f32>(&p, 2).unwrap_err();
        assert!(matches!(e, Error::File { .. }));
        assert!(msg(&e, &p).contains("truncated"), "{e}");

        raw_npy(&p, 1, "{'descr': '<f4', 'shape': (2, 2, 2), }", &[0u8; 32]);
        assert!(msg(&read_white_noise::<f32>(&p, 2).unwrap_err(), &p).contains("fortran_order"));
        raw_npy(&p, 1, "not a dict", &[0u8; 32]);
        assert!(msg(&read_white_noise::<f32>(&p, 2).unwrap_err(), &p).contains("not a valid .npy"));
        raw_npy(&p, 7, "{}", &[]);
        assert!(msg(&read_white_noise::<f32>(&p, 2).unwrap_err(), &p).contains("version 7"));

        let d = std::env::temp_dir();
        let e = read_white_noise::<f32>(&d, 2).unwrap_err();
        assert!(e.to_string().contains("directory"));
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn wrong_shape() {
        let p = tmp("shape");
        write_npy_f32(&p, &[4, 4, 4], &vec![0.0; 64]).unwrap();
        let e = read_white_noise::<f32>(&p, 8).unwrap_err();
        let s = msg(&e, &p);
        match &e {
            Error::Shape { what, found, expected } => {
                assert_eq!(what, &format!("white noise file {}", p.display()));
                assert_eq!(found, "shape (4, 4, 4)");
                assert_eq!(expected, "shape (8, 8, 8) = (box.particles,)*3");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.ends_with("has shape (4, 4, 4), expected shape (8, 8, 8) = (box.particles,)*3"),
            "{s}"
        );
        write_npy_f32(&p, &[64], &vec![0.0; 64]).unwrap();
        let e = read_white_noise::<f32>(&p, 4).unwrap_err();
        assert!(matches!(&e, Error::Shape { found, .. } if found == "shape (64,)"), "{e:?}");
        write_npy_f32(&p, &[4, 4, 2, 2], &vec![0.0; 64]).unwrap();
        assert!(matches!(read_white_noise::<f32>(&p, 4).unwrap_err(), Error::Shape { .. }));
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn wrong_dtype() {
        let p = tmp("dtype");
        for (descr, size) in [("<i8", 8), ("<c8", 8), ("|b1", 1), ("<f2", 2), ("<u4", 4)] {
            raw_npy(
                &p,
                1,
                &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2, 2), }}"),
                &vec![0u8; 8 * size],
            );
            let e = read_white_noise::<f32>(&p, 2).unwrap_err();
            let s = msg(&e, &p);
            match &e {
                Error::Shape { found, expected, .. } => {
                    assert_eq!(found, &format!("dtype {descr}"));
                    assert!(expected.contains("float32 or float64"));
                }
                other => panic!("{other:?}"),
            }
            assert!(s.contains(descr));
            assert!(matches!(read_npy(&p).unwrap_err(), Error::Shape { .. }));
        }
        raw_npy(
            &p,
            1,
            "{'descr': [('x', '<f4'), ('y', '<f4')], 'fortran_order': False, 'shape': (2, 2, 2), }",
            &[0u8; 64],
        );
        let e = read_white_noise::<f32>(&p, 2).unwrap_err();
        assert!(msg(&e, &p).contains("structured dtype"), "{e}");
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn fortran_order_is_refused() {
        let p = tmp("fortran");
        raw_npy(&p, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2, 2), }", &[0u8; 64]);
        let e = read_white_noise::<f64>(&p, 2).unwrap_err();
        let s = msg(&e, &p);
        assert!(matches!(e, Error::Shape { .. }));
        assert!(s.contains("Fortran"), "{s}");
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn non_finite_values_name_the_index() {
        let n = 3;
        let p = tmp("nan");
        for (bad, word) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (f64::NEG_INFINITY, "-inf")] {
            let mut w = noise(n);
            let i = n * n + 2 * n + 1; // [1, 2, 1]
            w[i] = bad;
            w[i + 3] = bad;
            write_npy_f64(&p, &[n, n, n], &w).unwrap();
            let e = read_white_noise::<f32>(&p, n).unwrap_err();
            let s = msg(&e, &p);
            assert!(matches!(e, Error::NonFinite { .. }));
            assert!(s.contains("[1, 2, 1]") && s.contains(word), "{s}");
        }
        // f64 values beyond the f32 range cannot be read as f32: said so, not "non-finite".
        let mut w = noise(n);
        w[5] = 1e300;
        write_npy_f64(&p, &[n, n, n], &w).unwrap();
        let e = read_white_noise::<f32>(&p, n).unwrap_err();
        let s = msg(&e, &p);
        assert!(matches!(e, Error::File { .. }), "{e:?}");
        assert!(
            s.contains("1e300") && s.contains("[0, 1, 2]") && s.contains("does not fit in f32"),
            "{s}"
        );
        assert!(s.contains("run.precision = \"f64\""), "{s}");
        assert!(read_white_noise::<f64>(&p, n).is_ok());
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn write_errors_name_the_path() {
        let p = std::env::temp_dir().join("cosmograd-no-such-dir-xyz").join("a.npy");
        let e = write_npy_f32(&p, &[1], &[0.0]).unwrap_err();
        assert!(msg(&e, &p).contains("cannot write"));
    }

    #[test]
    fn writes_replace_links_and_stale_temporaries_are_removed() {
        let d = std::env::temp_dir().join(format!("cosmograd-io-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let victim = d.join("victim.txt");
        std::fs::write(&victim, "mine").unwrap();
        let p = d.join("a.npy");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_npy_f32(&p, &[2], &[1.0, 2.0]).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        assert!(!std::fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(read_npy(&p).unwrap(), (vec![2], vec![1.0, 2.0]));
        assert!(is_partial_name(".a.npy.partial-123.tmp"));
        assert!(is_partial_name(partial_path(&p, "png").file_name().unwrap().to_str().unwrap()));
        for bad in [
            "a.npy.partial-1.tmp",
            ".partial-1.tmp",
            ".a.partial-x1.tmp",
            ".a.partial-1",
            ".a.partial-1.t.mp",
        ] {
            assert!(!is_partial_name(bad), "{bad}");
        }
        std::fs::write(d.join(".a.npy.partial-99999999.tmp"), "x").unwrap();
        std::fs::write(d.join(".keep"), "x").unwrap();
        assert_eq!(remove_partial_files(&d).unwrap().len(), 1);
        let mut left: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [".keep", "a.npy", "victim.txt"]);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    #[should_panic(expected = "write_npy")]
    fn write_size_mismatch_is_a_bug() {
        let _ = write_npy_f32(&tmp("panic"), &[2, 2], &[0.0; 3]);
    }

    #[test]
    fn header_parser() {
        assert!(matches!(Lit::parse("{'a': (1, 2,), 'b': [True, None], }"), Some(Lit::Dict(_))));
        assert!(Lit::parse("{'a': (1, 2}").is_none());
        assert!(Lit::parse("{'a' 1}").is_none());
        assert_eq!(shape_string(&[]), "()");
        assert_eq!(shape_string(&[3]), "(3,)");
        assert_eq!(shape_string(&[3, 4]), "(3, 4)");
    }
}
