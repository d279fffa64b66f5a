//! A Didomi batch export on disk (`--from-export DIR`): every NDJSON file
//! under DIR (`.json`, `.ndjson`, `.jsonl`, gzipped or not; Didomi writes
//! `.json.gz` into Hive partitions such as
//! `export-id=…/date=…/users/part-0001.json.gz`), read in path order, one
//! user per line.
//!
//! A line is a user object, or (another reading of Didomi's "each line holds
//! a user and its events") `{"user": {…}, "events": […]}`; both are read.
//! A line that is neither is reported with its file and line and skipped;
//! the rest of the file is still read.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::Value;

/// One line's user, or why the line is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportLine {
    /// The user object of the line.
    User {
        /// `relative/path.json.gz:line`.
        origin: String,
        /// The user.
        user: Value,
    },
    /// A line that is not a user.
    Malformed {
        /// `relative/path.json.gz:line`.
        origin: String,
        /// What is wrong.
        error: String,
    },
}

/// Where a walk of the export stands: the file (relative path) and how many
/// of its lines were consumed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportPosition {
    /// Relative path of the current file.
    pub file: String,
    /// Lines of it already consumed.
    pub line: u64,
}

struct OpenFile {
    name: String,
    reader: Box<dyn BufRead>,
    line: u64,
    read_bytes: Rc<Cell<u64>>,
}

/// Reads an export directory page by page.
pub struct ExportReader {
    root: PathBuf,
    files: Vec<(String, u64)>,
    next_file: usize,
    current: Option<OpenFile>,
    done_bytes: u64,
    total_bytes: u64,
    has_success_marker: bool,
}

/// The data files under `root`, as sorted relative paths with their sizes.
pub fn data_files(root: &Path) -> io::Result<(Vec<(String, u64)>, bool)> {
    let mut files = Vec::new();
    let mut success = false;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if name == "_SUCCESS" {
                success = true;
            } else if !name.starts_with('.') && is_data_file(&name) {
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                files.push((relative, entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    Ok((files, success))
}

fn is_data_file(name: &str) -> bool {
    let name = name.strip_suffix(".gz").unwrap_or(name);
    [".json", ".ndjson", ".jsonl"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Counts the bytes read from the file, for progress.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl ExportReader {
    /// Opens `root`, resuming after `start` when given.
    pub fn open(root: &Path, start: Option<&ExportPosition>) -> io::Result<Self> {
        let (files, has_success_marker) = data_files(root)?;
        let total_bytes = files.iter().map(|(_, size)| size).sum();
        let mut reader = Self {
            root: root.to_path_buf(),
            files,
            next_file: 0,
            current: None,
            done_bytes: 0,
            total_bytes,
            has_success_marker,
        };
        if let Some(start) = start {
            while reader.files.get(reader.next_file).is_some_and(|(name, _)| {
                // u64::MAX marks a file given up on (corrupt): skip it whole.
                name.as_str() < start.file.as_str()
                    || (*name == start.file && start.line == u64::MAX)
            }) {
                reader.done_bytes += reader.files[reader.next_file].1;
                reader.next_file += 1;
            }
            if reader
                .files
                .get(reader.next_file)
                .is_some_and(|(name, _)| *name == start.file)
            {
                reader.open_next()?;
                if let Some(current) = reader.current.as_mut() {
                    let mut skipped = Vec::new();
                    while current.line < start.line {
                        skipped.clear();
                        if current.reader.read_until(b'\n', &mut skipped)? == 0 {
                            break;
                        }
                        current.line += 1;
                    }
                }
            }
        }
        Ok(reader)
    }

    /// The number of data files found.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Whether a `_SUCCESS` file exists (Didomi writes it when a partition is complete).
    pub fn has_success_marker(&self) -> bool {
        self.has_success_marker
    }

    /// Share of the export's (compressed) bytes read, 0.0..=1.0.
    pub fn fraction_done(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        let current = self.current.as_ref().map_or(0, |c| c.read_bytes.get());
        ((self.done_bytes + current) as f64 / self.total_bytes as f64).min(1.0)
    }

    fn open_next(&mut self) -> io::Result<()> {
        let (name, _) = self.files[self.next_file].clone();
        self.next_file += 1;
        let file = File::open(self.root.join(&name))?;
        let read_bytes = Rc::new(Cell::new(0));
        let counting = Counting {
            inner: file,
            count: read_bytes.clone(),
        };
        let reader: Box<dyn BufRead> = if name.ends_with(".gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(counting)))
        } else {
            Box::new(BufReader::new(counting))
        };
        self.current = Some(OpenFile {
            name,
            reader,
            line: 0,
            read_bytes,
        });
        Ok(())
    }

    /// Up to `size` lines (users or malformed lines; blank lines are not
    /// counted) and the position after them; `None` at the end of the export.
    pub fn next_page(
        &mut self,
        size: usize,
    ) -> io::Result<Option<(Vec<ExportLine>, ExportPosition)>> {
        let mut lines = Vec::new();
        let mut position = None;
        let mut buffer = Vec::new();
        while lines.len() < size {
            if self.current.is_none() {
                if self.next_file >= self.files.len() {
                    break;
                }
                self.open_next()?;
            }
            let current = self.current.as_mut().expect("opened above");
            buffer.clear();
            let read = current.reader.read_until(b'\n', &mut buffer);
            let origin = format!("{}:{}", current.name, current.line + 1);
            match read {
                Ok(0) => {
                    self.done_bytes += self.files[self.next_file - 1].1;
                    self.current = None;
                    continue;
                }
                Ok(_) => {
                    current.line += 1;
                    position = Some(ExportPosition {
                        file: current.name.clone(),
                        line: current.line,
                    });
                    if buffer.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    lines.push(parse_line(&buffer, origin));
                }
                Err(err) => {
                    // A corrupt gzip stream: report it and move to the next file.
                    lines.push(ExportLine::Malformed {
                        origin,
                        error: format!("the file cannot be read further: {err}"),
                    });
                    current.line += 1;
                    position = Some(ExportPosition {
                        file: current.name.clone(),
                        line: u64::MAX,
                    });
                    self.done_bytes += self.files[self.next_file - 1].1;
                    self.current = None;
                }
            }
        }
        match position {
            Some(position) if !lines.is_empty() => Ok(Some((lines, position))),
            _ => Ok(None),
        }
    }
}

/// One line: a user object, or `{"user": {…}, "events": […]}`.
pub fn parse_line(bytes: &[u8], origin: String) -> ExportLine {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(err) => {
            return ExportLine::Malformed {
                origin,
                error: format!("not JSON: {err}"),
            };
        }
    };
    let Value::Object(mut object) = value else {
        return ExportLine::Malformed {
            origin,
            error: "not a JSON object".into(),
        };
    };
    let wrapped =
        !object.contains_key("consents") && object.get("user").is_some_and(Value::is_object);
    let user = if wrapped {
        object.remove("user").unwrap_or_default()
    } else {
        Value::Object(object)
    };
    if user.get("id").and_then(Value::as_str).is_none() {
        return ExportLine::Malformed {
            origin,
            error: "the user has no string `id`".into(),
        };
    }
    ExportLine::User { origin, user }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> String {
        "f.json:1".into()
    }

    #[test]
    fn a_bare_user_line_is_the_user() {
        let line = parse_line(br#"{"id":"u1","consents":{}}"#, origin());
        assert!(matches!(line, ExportLine::User { user, .. } if user["id"] == "u1"));
    }

    #[test]
    fn a_user_with_its_events_is_the_user() {
        let line = parse_line(
            br#"{"user":{"id":"u1","consents":{}},"events":[]}"#,
            origin(),
        );
        assert!(matches!(line, ExportLine::User { user, .. } if user["id"] == "u1"));
    }

    #[test]
    fn broken_json_and_non_users_are_malformed_with_their_origin() {
        for bytes in [&b"{\"id\": "[..], b"[1,2]", br#"{"consents":{}}"#] {
            let line = parse_line(bytes, origin());
            assert!(
                matches!(&line, ExportLine::Malformed { origin, .. } if origin == "f.json:1"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn only_json_lines_files_count_as_data() {
        assert!(is_data_file("part-0001.json.gz"));
        assert!(is_data_file("users.ndjson"));
        assert!(is_data_file("users.jsonl.gz"));
        assert!(!is_data_file("_SUCCESS"));
        assert!(!is_data_file("notes.txt.gz"));
    }
}
