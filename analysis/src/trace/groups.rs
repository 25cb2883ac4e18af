//! A trace's row groups read one at a time, each with one read call, serving the page
//! readers of `direct`.

use std::sync::Arc;

use anyhow::{ensure, Result};
use bytes::{Buf, Bytes as Buffer};
use parquet::file::{
    metadata::RowGroupMetaData,
    properties::ReaderProperties,
    reader::{ChunkReader, Length},
    serialized_reader::SerializedRowGroupReader,
};

/// One row group's bytes, read from the file with one call, serving the group's page
/// readers. Parquet's reader for a `File` duplicates the descriptor, seeks and reads (twice)
/// for every page: thousands of system calls a trace, slow ones in a VM. Holding a group at
/// a time instead of the whole file keeps the memory to one group's.
pub(super) struct Group {
    file_len: u64,
    start: u64,
    bytes: Buffer,
}

impl Group {
    /// Group `g`'s bytes (of its column `only`, or all), read into `buf` (the previous
    /// group's buffer: its pages are warm and it grows only past the largest group so far).
    fn read(
        file: &std::fs::File,
        file_len: u64,
        g: &RowGroupMetaData,
        only: Option<usize>,
        mut buf: Vec<u8>,
    ) -> Result<Group> {
        use std::os::unix::fs::FileExt;
        let cols = g.columns().iter().enumerate();
        let ranges = cols
            .filter(|(i, _)| only.is_none_or(|o| o == *i))
            .map(|(_, c)| c.byte_range());
        let start = ranges.clone().map(|(s, _)| s).min().unwrap_or(0);
        let end = ranges.map(|(s, l)| s.saturating_add(l)).max().unwrap_or(0);
        ensure!(
            start <= end && end <= file_len,
            "row group past the end of the file"
        );
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, start)?;
        Ok(Group {
            file_len,
            start,
            bytes: buf.into(),
        })
    }

    fn slice(&self, start: u64, len: Option<usize>) -> parquet::errors::Result<Buffer> {
        let bad = || parquet::errors::ParquetError::EOF("page outside its row group".into());
        let from = start.checked_sub(self.start).ok_or_else(bad)? as usize;
        let to = len.map_or(Some(self.bytes.len()), |l| from.checked_add(l));
        match to {
            Some(to) if from <= to && to <= self.bytes.len() => Ok(self.bytes.slice(from..to)),
            _ => Err(bad()),
        }
    }
}

impl Length for Group {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Group {
    type T = bytes::buf::Reader<Buffer>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Buffer> {
        self.slice(start, Some(length))
    }
}

/// Row groups' page readers, each group's bytes read in one call into a buffer that
/// goes from group to group.
pub(super) struct Groups<'f> {
    file: &'f std::fs::File,
    file_len: u64,
    spare: Vec<u8>,
    current: Option<Arc<Group>>,
}

impl<'f> Groups<'f> {
    pub(super) fn new(file: &'f std::fs::File) -> Result<Groups<'f>> {
        Ok(Groups {
            file,
            file_len: file.metadata()?.len(),
            spare: Vec::new(),
            current: None,
        })
    }

    /// Group `g`'s reader, holding the bytes of its column `only` (its other columns'
    /// page readers then fail) or of all. The previous group's buffer is taken back first,
    /// if its readers are gone (they are by the next call).
    pub(super) fn get<'a>(
        &mut self,
        md: &'a parquet::file::metadata::ParquetMetaData,
        g: usize,
        only: Option<usize>,
    ) -> Result<SerializedRowGroupReader<'a, Group>> {
        if let Some(done) = self.current.take().and_then(|a| Arc::try_unwrap(a).ok()) {
            if let Ok(m) = done.bytes.try_into_mut() {
                self.spare = m.into();
            }
        }
        let buf = std::mem::take(&mut self.spare);
        let group = Group::read(self.file, self.file_len, md.row_group(g), only, buf)?;
        let group = Arc::new(group);
        self.current = Some(Arc::clone(&group));
        let props = Arc::new(ReaderProperties::builder().build());
        Ok(SerializedRowGroupReader::new(
            group,
            md.row_group(g),
            None,
            props,
        )?)
    }
}
