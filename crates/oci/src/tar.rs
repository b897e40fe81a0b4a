//! A minimal ustar writer and reader: enough for image layers and image layout archives.
//!
//! The writer takes everything that varies between machines out of the archive (owner names,
//! device numbers, the time: the caller passes one fixed mtime), so the same entries give the
//! same bytes. The reader understands what this writer and the common tools (GNU tar, Go's
//! archive/tar, skopeo) write for short paths: regular files and directories, with the ustar
//! prefix; other entry kinds (links, PAX and GNU long-name records) are skipped.

use crate::Error;

const BLOCK: usize = 512;

/// One entry of a tar archive, as written by [`Writer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// Appends entries to an in-memory archive.
pub struct Writer {
    out: Vec<u8>,
    mtime: u64,
}

impl Writer {
    /// Every entry gets `mtime` (seconds since the epoch) as its modification time.
    pub fn new(mtime: u64) -> Self {
        Self {
            out: Vec::new(),
            mtime,
        }
    }

    pub fn append(&mut self, entry: &Entry) -> Result<(), Error> {
        match entry {
            Entry::Dir {
                path,
                mode,
                uid,
                gid,
            } => {
                let name = if path.ends_with('/') {
                    path.clone()
                } else {
                    format!("{path}/")
                };
                self.header(&name, *mode, *uid, *gid, 0, b'5', "")
            }
            Entry::File {
                path,
                mode,
                uid,
                gid,
                data,
            } => {
                self.header(path, *mode, *uid, *gid, data.len() as u64, b'0', "")?;
                self.out.extend_from_slice(data);
                pad(&mut self.out);
                Ok(())
            }
            Entry::Symlink { path, target } => self.header(path, 0o777, 0, 0, 0, b'2', target),
        }
    }

    /// The archive with its end marker (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 2 * BLOCK, 0);
        self.out
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        kind: u8,
        link: &str,
    ) -> Result<(), Error> {
        let mut h = [0u8; BLOCK];
        let (prefix, name) = split_path(path)?;
        if link.len() > 100 {
            return Err(Error::Invalid(format!(
                "symlink target `{link}` is longer than 100 bytes (ustar limit)"
            )));
        }
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], u64::from(mode & 0o7777));
        octal(&mut h[108..116], u64::from(uid));
        octal(&mut h[116..124], u64::from(gid));
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], self.mtime);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], 0);
        octal(&mut h[337..345], 0);
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        // The checksum is computed with its own field read as spaces.
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let digits = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(digits.as_bytes());
        self.out.extend_from_slice(&h);
        Ok(())
    }
}

/// Splits `path` into the ustar `prefix` (≤ 155 bytes) and `name` (≤ 100 bytes) fields.
fn split_path(path: &str) -> Result<(&str, &str), Error> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let trimmed = path.trim_end_matches('/');
    for (i, _) in trimmed.match_indices('/') {
        let (prefix, name) = (&path[..i], &path[i + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 && !name.is_empty() {
            return Ok((prefix, name));
        }
    }
    Err(Error::Invalid(format!(
        "path `{path}` does not fit a ustar header (name ≤ 100 bytes after a directory prefix \
         ≤ 155 bytes)"
    )))
}

/// Zero-padded octal with a terminating NUL, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// A regular file or directory read back from an archive.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadEntry<'a> {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// `None` for a directory.
    pub data: Option<&'a [u8]>,
}

/// The regular files and directories of `archive`, in archive order.
pub fn read(archive: &[u8]) -> Result<Vec<ReadEntry<'_>>, Error> {
    let bad = |offset: usize, what: &str| {
        Error::Invalid(format!("not a tar archive: {what} at byte {offset}"))
    };
    let mut entries = Vec::new();
    let mut at = 0;
    while at + BLOCK <= archive.len() {
        let h = &archive[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let stored: u32 =
            parse_octal(&h[148..156]).ok_or_else(|| bad(at, "bad checksum field"))? as u32;
        let computed: u32 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| u32::from(if (148..156).contains(&i) { b' ' } else { b }))
            .sum();
        if stored != computed {
            return Err(bad(at, "header checksum mismatch"));
        }
        let field = |r: std::ops::Range<usize>| -> Result<u64, Error> {
            parse_octal(&h[r]).ok_or_else(|| bad(at, "bad numeric field"))
        };
        let size = usize::try_from(field(124..136)?).map_err(|_| bad(at, "size too large"))?;
        let name = cstr(&h[0..100]);
        let prefix = if &h[257..262] == b"ustar" {
            cstr(&h[345..500])
        } else {
            String::new()
        };
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let data_start = at + BLOCK;
        let data_end = data_start
            .checked_add(size)
            .filter(|&e| e <= archive.len())
            .ok_or_else(|| bad(at, "entry runs past the end"))?;
        let kind = h[156];
        if matches!(kind, b'0' | 0 | b'5') {
            entries.push(ReadEntry {
                path: path.trim_start_matches("./").to_owned(),
                mode: field(100..108)? as u32,
                uid: field(108..116)? as u32,
                gid: field(116..124)? as u32,
                mtime: field(136..148)?,
                data: (kind != b'5').then(|| &archive[data_start..data_end]),
            });
        }
        at = data_start + size.div_ceil(BLOCK) * BLOCK;
    }
    Ok(entries)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_fixed_metadata() {
        let mut w = Writer::new(1_700_000_000);
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let entries = [
            Entry::Dir {
                path: "etc".into(),
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
            Entry::File {
                path: "etc/passwd".into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                data: b"root:x:0:0::/root:/sbin/nologin\n".to_vec(),
            },
            Entry::File {
                path: long.clone(),
                mode: 0o755,
                uid: 65532,
                gid: 65532,
                data: vec![7; 1000],
            },
        ];
        for e in &entries {
            w.append(e).unwrap();
        }
        let archive = w.finish();
        assert_eq!(archive.len() % BLOCK, 0);
        let back = read(&archive).unwrap();
        let paths: Vec<&str> = back.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["etc/", "etc/passwd", long.as_str()]);
        assert_eq!(back[1].data.unwrap(), b"root:x:0:0::/root:/sbin/nologin\n");
        assert_eq!(
            (back[2].uid, back[2].gid, back[2].mode),
            (65532, 65532, 0o755)
        );
        assert!(back.iter().all(|e| e.mtime == 1_700_000_000));
        assert_eq!(back[2].data.unwrap().len(), 1000);
    }

    #[test]
    fn corrupt_headers_and_unfit_paths_are_refused() {
        let mut w = Writer::new(0);
        w.append(&Entry::File {
            path: "a".into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: b"x".to_vec(),
        })
        .unwrap();
        let mut archive = w.finish();
        archive[0] = b'b';
        assert!(read(&archive).unwrap_err().to_string().contains("checksum"));
        let too_long = Entry::File {
            path: "x".repeat(101),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: vec![],
        };
        assert!(Writer::new(0).append(&too_long).is_err());
    }
}
