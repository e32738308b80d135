//! The city file: a small header, then the [`City`] encoded with `postcard`.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "MUSTCITY"
//! 8       4     format version, u32 little-endian (FORMAT_VERSION)
//! 12      8     payload length in bytes, u64 little-endian
//! 20      4     CRC-32 (IEEE) of the payload, u32 little-endian
//! 24      n     payload: postcard encoding of `City`
//! ```
//!
//! Files are written to a temporary file beside the target, synced, then renamed over it,
//! so a crash or an error never leaves a partial city file under the target name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::model::City;

pub const MAGIC: &[u8; 8] = b"MUSTCITY";
/// Bumped whenever the encoding of [`City`] changes; older files are refused with
/// [`CityFileError::UnsupportedVersion`] and must be re-imported.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 24;
/// A limit on what `load` accepts, so a damaged length field cannot ask for all memory.
pub const MAX_PAYLOAD_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CityFileError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a Muster city file (bad magic bytes)")]
    NotACityFile(PathBuf),
    #[error(
        "{path} has city format version {found}, this build reads version {supported}; re-import it"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path} is truncated: header says {expected_bytes} payload bytes, file has {found_bytes}"
    )]
    Truncated {
        path: PathBuf,
        expected_bytes: u64,
        found_bytes: u64,
    },
    #[error("{0} is corrupt: payload checksum does not match")]
    ChecksumMismatch(PathBuf),
    #[error("{path} is corrupt: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
    #[error("{path} is not usable: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: crate::model::InvalidCity,
    },
    #[error("cannot encode the city: {0}")]
    Encode(#[source] postcard::Error),
}

/// Encodes a city into the bytes of a city file.
pub fn to_bytes(city: &City) -> Result<Vec<u8>, CityFileError> {
    let payload = postcard::to_stdvec(city).map_err(CityFileError::Encode)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes the bytes of a city file; `path` only names the file in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<City, CityFileError> {
    let path_buf = || path.to_path_buf();
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(CityFileError::NotACityFile(path_buf()));
    }
    if bytes.len() < HEADER_LEN {
        return Err(CityFileError::Truncated {
            path: path_buf(),
            expected_bytes: HEADER_LEN as u64,
            found_bytes: bytes.len() as u64,
        });
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(CityFileError::UnsupportedVersion {
            path: path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let found = (bytes.len() - HEADER_LEN) as u64;
    if len > MAX_PAYLOAD_BYTES || found < len {
        return Err(CityFileError::Truncated {
            path: path_buf(),
            expected_bytes: len,
            found_bytes: found,
        });
    }
    let payload = &bytes[HEADER_LEN..HEADER_LEN + len as usize];
    if crc32fast::hash(payload) != word(20) {
        return Err(CityFileError::ChecksumMismatch(path_buf()));
    }
    let city: City = postcard::from_bytes(payload).map_err(|source| CityFileError::Decode {
        path: path_buf(),
        source,
    })?;
    city.validate().map_err(|source| CityFileError::Invalid {
        path: path_buf(),
        source,
    })?;
    Ok(city)
}

/// Reads a city file.
pub fn load(path: &Path) -> Result<City, CityFileError> {
    let bytes = fs::read(path).map_err(|source| CityFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Writes a city file atomically (temporary file, sync, rename).
pub fn save(city: &City, path: &Path) -> Result<(), CityFileError> {
    let bytes = to_bytes(city)?;
    write_atomically(path, |file| file.write_all(&bytes)).map_err(|source| CityFileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `write` against a temporary file beside `path` and renames it over `path` only if
/// every step succeeded; otherwise the temporary file is removed and `path` is untouched.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The bundled demo city (central Helsinki, with made-up services), as shipped in
/// `geodata/cities/helsinki.city` and built into the binary.
pub const BUNDLED_HELSINKI: &[u8] = include_bytes!("../cities/helsinki.city");

/// A bundled city by name (`helsinki`), decoded; `None` for an unknown name.
pub fn bundled(name: &str) -> Option<Result<City, CityFileError>> {
    match name {
        "helsinki" => Some(from_bytes(
            BUNDLED_HELSINKI,
            Path::new("geodata/cities/helsinki.city"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bounds, CityMeta};
    use crate::point::LatLon;

    fn tiny_city() -> City {
        let a = LatLon::from_lat_lon(60.0, 24.0).unwrap();
        let b = LatLon::from_lat_lon(60.001, 24.001).unwrap();
        City {
            meta: CityMeta {
                name: "tiny".into(),
                source: "test".into(),
                attribution: "test".into(),
                bounds: Bounds {
                    south_west: a,
                    north_east: b,
                },
            },
            nodes: vec![a, b],
            roads: vec![crate::model::Road {
                from: 0,
                to: 1,
                shape: vec![],
                direction: crate::model::Direction::Both,
                class: crate::model::RoadClass::Residential,
                speed_kmh: 35,
                length_m: 133.0,
                street: Some(0),
            }],
            streets: vec!["Main Street".into()],
            addresses: vec![],
            districts: vec![],
            stations: vec![],
            hospitals: vec![],
            station_areas: vec![],
            map_lines: vec![],
        }
    }

    #[test]
    fn round_trips() {
        let city = tiny_city();
        let bytes = to_bytes(&city).unwrap();
        assert_eq!(from_bytes(&bytes, Path::new("x")).unwrap(), city);
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let good = to_bytes(&tiny_city()).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        let mut bad_city = tiny_city();
        bad_city.roads[0].to = 7;
        let broken = to_bytes(&bad_city).unwrap();
        let mut future = good.clone();
        future[8] = 99;
        type Expect = fn(&CityFileError) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("empty file", vec![], |e| {
                matches!(e, CityFileError::NotACityFile(_))
            }),
            ("other format", b"PK\x03\x04 zip file".to_vec(), |e| {
                matches!(e, CityFileError::NotACityFile(_))
            }),
            ("cut in the header", good[..15].to_vec(), |e| {
                matches!(e, CityFileError::Truncated { .. })
            }),
            ("cut in the payload", good[..good.len() - 3].to_vec(), |e| {
                matches!(e, CityFileError::Truncated { .. })
            }),
            ("one bit flipped", flipped, |e| {
                matches!(e, CityFileError::ChecksumMismatch(_))
            }),
            ("road to a missing node", broken, |e| {
                matches!(e, CityFileError::Invalid { .. })
            }),
            ("newer version", future, |e| {
                matches!(e, CityFileError::UnsupportedVersion { found: 99, .. })
            }),
        ];
        for (why, bytes, expected) in cases {
            let err = from_bytes(&bytes, Path::new("x")).expect_err(why);
            assert!(expected(&err), "{why}: got {err}");
        }
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.city");
        let err = write_atomically(&target, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        save(&tiny_city(), &target).unwrap();
        assert_eq!(load(&target).unwrap(), tiny_city());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
