//! A request body spooled before the app runs: in memory up to a threshold, then in an
//! unlinked temp file, so a 1 GiB upload costs disk, not RSS.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Seek, SeekFrom, Write};

/// Bodies up to this size stay in memory.
pub const MEMORY_LIMIT: usize = 1 << 20;

pub enum Spool {
    Memory(Vec<u8>),
    Disk { file: File, len: u64 },
}

impl Default for Spool {
    fn default() -> Self {
        Spool::Memory(Vec::new())
    }
}

impl Spool {
    /// A spool for a body of `expected` bytes (when known): a body that stays in memory
    /// gets its buffer in one allocation, not a chain of doublings to 1 MiB.
    pub fn with_expected(expected: Option<u64>) -> Spool {
        let cap = expected.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if cap == 0 || cap > MEMORY_LIMIT {
            return Spool::default();
        }
        Spool::Memory(Vec::with_capacity(cap))
    }

    pub fn len(&self) -> u64 {
        match self {
            Spool::Memory(v) => v.len() as u64,
            Spool::Disk { len, .. } => *len,
        }
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Spool::Memory(v) if v.len() + data.len() <= MEMORY_LIMIT => {
                v.extend_from_slice(data);
                Ok(())
            }
            Spool::Memory(v) => {
                let mut file = tempfile::tempfile()?;
                file.write_all(v)?;
                file.write_all(data)?;
                let len = (v.len() + data.len()) as u64;
                *self = Spool::Disk { file, len };
                Ok(())
            }
            Spool::Disk { file, len } => {
                file.write_all(data)?;
                *len += data.len() as u64;
                Ok(())
            }
        }
    }

    /// The body as a reader from its start.
    pub fn into_reader(self) -> io::Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            Spool::Memory(v) => Box::new(Cursor::new(v)),
            Spool::Disk { mut file, .. } => {
                file.seek(SeekFrom::Start(0))?;
                Box::new(BufReader::with_capacity(64 * 1024, file))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn spills_to_disk_past_the_limit_and_reads_back() {
        let mut s = Spool::default();
        let chunk = vec![7u8; 300_000];
        for _ in 0..5 {
            s.write(&chunk).unwrap();
        }
        assert!(matches!(s, Spool::Disk { .. }));
        assert_eq!(s.len(), 1_500_000);
        let mut back = Vec::new();
        s.into_reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 1_500_000);
        assert!(back.iter().all(|&b| b == 7));
    }

    #[test]
    fn small_bodies_stay_in_memory() {
        let mut s = Spool::default();
        s.write(b"abc").unwrap();
        assert!(matches!(s, Spool::Memory(_)));
        let mut back = String::new();
        s.into_reader().unwrap().read_to_string(&mut back).unwrap();
        assert_eq!(back, "abc");
    }
}
