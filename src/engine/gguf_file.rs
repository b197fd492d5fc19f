//! The GGUF container read by our own parser: metadata, the tensor directory and where the
//! tensor data starts. candle's parser stops at the first storage type it does not know, and the
//! i-quants most low-bit files use are such types; here every type is listed, and a tensor is
//! read either by candle (the types it has) or by [`super::quants`].

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};

use super::error::candle_message;
use super::quants::QuantType;

/// Where tensor data starts unless `general.alignment` says otherwise.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Bounds on what a header may claim, so that a corrupt file fails before a huge allocation.
const MAX_COUNT: u64 = 1 << 30;
const MAX_DIMS: u32 = 4;
const MAX_DEPTH: usize = 8;

/// A GGUF file's header.
pub struct GgufHeader {
    pub metadata: HashMap<String, Value>,
    pub tensor_infos: HashMap<String, StoredTensor>,
    /// Where the tensor data starts; each tensor's `offset` counts from here.
    pub tensor_data_offset: u64,
}

/// One entry of the tensor directory.
#[derive(Clone, Debug)]
pub struct StoredTensor {
    pub storage: Storage,
    /// Dimensions, outermost first (GGUF lists them innermost first).
    pub shape: Vec<usize>,
    pub offset: u64,
}

/// A storage type and who reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Candle(GgmlDType),
    Own(QuantType),
}

/// ggml type ids candle reads (Q8_1 and Q8_K it parses but cannot read: llama.cpp only uses
/// them for intermediate results).
const CANDLE_TYPES: [(u32, GgmlDType); 13] = [
    (0, GgmlDType::F32),
    (1, GgmlDType::F16),
    (30, GgmlDType::BF16),
    (2, GgmlDType::Q4_0),
    (3, GgmlDType::Q4_1),
    (6, GgmlDType::Q5_0),
    (7, GgmlDType::Q5_1),
    (8, GgmlDType::Q8_0),
    (10, GgmlDType::Q2K),
    (11, GgmlDType::Q3K),
    (12, GgmlDType::Q4K),
    (13, GgmlDType::Q5K),
    (14, GgmlDType::Q6K),
];

impl Storage {
    /// The storage of a ggml type id, if it can be read.
    pub fn from_type_id(id: u32) -> Option<Self> {
        CANDLE_TYPES
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, dtype)| Self::Candle(*dtype))
            .or_else(|| QuantType::from_type_id(id).map(Self::Own))
    }

    /// Every readable type's name, in ggml's order of ids.
    pub fn readable_names() -> Vec<&'static str> {
        let mut ids: Vec<u32> = CANDLE_TYPES.iter().map(|(id, _)| *id).collect();
        ids.extend(QuantType::ALL.iter().map(|t| t.type_id()));
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(Self::from_type_id)
            .map(Self::name)
            .collect()
    }

    /// llama.cpp's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Candle(dtype) => candle_type_name(dtype),
            Self::Own(kind) => kind.name(),
        }
    }

    pub fn block_size(self) -> usize {
        match self {
            Self::Candle(dtype) => dtype.block_size(),
            Self::Own(kind) => kind.block_size(),
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::Candle(dtype) => dtype.type_size(),
            Self::Own(kind) => kind.type_size(),
        }
    }
}

fn candle_type_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// Names of the ggml types no reader here knows, for messages.
pub fn unreadable_type_name(type_id: u32) -> &'static str {
    match type_id {
        4 => "Q4_2",
        5 => "Q4_3",
        9 => "Q8_1",
        15 => "Q8_K",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        _ => "an unknown type",
    }
}

impl StoredTensor {
    /// The bytes the tensor takes in the file, or why its shape cannot be stored: a count
    /// of elements that is not whole blocks of its type (or does not fit in memory).
    pub fn byte_len(&self) -> Result<u64, String> {
        let elements = self
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format!("its shape {:?} is too large", self.shape))?;
        let block = self.storage.block_size();
        if !elements.is_multiple_of(block) {
            return Err(format!(
                "it has {elements} elements, not a whole number of {} blocks of {block}",
                self.storage.name()
            ));
        }
        (elements / block)
            .checked_mul(self.storage.type_size())
            .map(|bytes| bytes as u64)
            .ok_or_else(|| format!("its shape {:?} is too large", self.shape))
    }

    /// The tensor's values as f32 on the CPU, in its shape. Errors are messages; the caller
    /// names the file and the tensor.
    pub fn read_f32<R: Read + Seek>(
        &self,
        reader: &mut R,
        tensor_data_offset: u64,
    ) -> Result<Tensor, String> {
        let len = self.byte_len()?;
        let len = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
        let mut raw = vec![0u8; len];
        reader
            .seek(SeekFrom::Start(
                tensor_data_offset.saturating_add(self.offset),
            ))
            .and_then(|_| reader.read_exact(&mut raw))
            .map_err(|e| format!("cannot read its {len} bytes: {e}"))?;
        match self.storage {
            Storage::Candle(dtype) => {
                qtensor_from_ggml(dtype, &raw, self.shape.clone(), &Device::Cpu)
                    .and_then(|q| q.dequantize(&Device::Cpu))
                    .and_then(|t| t.to_dtype(DType::F32))
                    .map_err(|e| candle_message(&e))
            }
            Storage::Own(kind) => {
                let values = kind.dequantize(&raw)?;
                Tensor::from_vec(values, self.shape.clone(), &Device::Cpu)
                    .map_err(|e| candle_message(&e))
            }
        }
    }
}

/// What can be wrong with a header.
#[derive(Debug)]
pub enum HeaderError {
    /// A tensor in a storage type no reader here knows.
    UnreadableType { tensor: String, type_id: u32 },
    /// Anything else: cut short, corrupt, not GGUF.
    Malformed(String),
}

/// Reads the header of a GGUF file from its start.
pub fn read_header<R: Read + Seek>(reader: &mut R) -> Result<GgufHeader, HeaderError> {
    let file_size = reader
        .seek(SeekFrom::End(0))
        .and_then(|size| reader.seek(SeekFrom::Start(0)).map(|_| size))
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    let mut r = HeaderReader {
        reader,
        position: 0,
        file_size,
        wide: true,
    };
    if r.u32()? != u32::from_le_bytes(*b"GGUF") {
        return Err(malformed("it does not start with \"GGUF\""));
    }
    let version = r.u32()?;
    if !(1..=3).contains(&version) {
        return Err(malformed(format!("GGUF version {version} is unknown")));
    }
    // Version 1 used 32-bit lengths and counts.
    r.wide = version != 1;
    let tensor_count = r.count(4 + 4 + 8)?;
    let metadata_count = r.count(4 + 1)?;
    let mut metadata = HashMap::with_capacity(metadata_count);
    for _ in 0..metadata_count {
        let key = r.string()?;
        let value_type = r.u32()?;
        let value = r.value(value_type, 0)?;
        metadata.insert(key, value);
    }
    let mut tensor_infos = HashMap::with_capacity(tensor_count);
    for _ in 0..tensor_count {
        let name = r.string()?;
        let dims = r.u32()?;
        if dims > MAX_DIMS {
            return Err(malformed(format!(
                "tensor \"{name}\" has {dims} dimensions, at most {MAX_DIMS} are possible"
            )));
        }
        let mut shape = (0..dims)
            .map(|_| r.length().map(|n| n as usize))
            .collect::<Result<Vec<_>, _>>()?;
        shape.reverse();
        let type_id = r.u32()?;
        let offset = r.u64()?;
        let Some(storage) = Storage::from_type_id(type_id) else {
            return Err(HeaderError::UnreadableType {
                tensor: name,
                type_id,
            });
        };
        tensor_infos.insert(
            name,
            StoredTensor {
                storage,
                shape,
                offset,
            },
        );
    }
    let alignment = match metadata.get("general.alignment") {
        Some(Value::U8(v)) => u64::from(*v),
        Some(Value::U16(v)) => u64::from(*v),
        Some(Value::U32(v)) => u64::from(*v),
        Some(Value::I32(v)) if *v > 0 => *v as u64,
        _ => DEFAULT_ALIGNMENT,
    }
    .max(1);
    Ok(GgufHeader {
        metadata,
        tensor_infos,
        tensor_data_offset: r.position.div_ceil(alignment) * alignment,
    })
}

fn malformed(message: impl Into<String>) -> HeaderError {
    HeaderError::Malformed(message.into())
}

struct HeaderReader<'a, R: Read> {
    reader: &'a mut R,
    position: u64,
    file_size: u64,
    /// 64-bit lengths (GGUF v2 and v3).
    wide: bool,
}

impl<R: Read> HeaderReader<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], HeaderError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), HeaderError> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                malformed(format!(
                    "it ends at byte {} inside the header",
                    self.file_size
                ))
            } else {
                malformed(e.to_string())
            }
        })?;
        self.position += buf.len() as u64;
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.position)
    }

    fn u32(&mut self) -> Result<u32, HeaderError> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, HeaderError> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn length(&mut self) -> Result<u64, HeaderError> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    /// A count of entries each at least `min_bytes` long, checked against what is left.
    fn count(&mut self, min_bytes: u64) -> Result<usize, HeaderError> {
        let n = self.length()?;
        if n > MAX_COUNT || n.saturating_mul(min_bytes) > self.remaining() {
            return Err(malformed(format!(
                "it claims {n} entries at byte {}, more than the {} bytes left hold",
                self.position,
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, HeaderError> {
        let n = self.count(1)?;
        let mut buf = vec![0u8; n];
        self.fill(&mut buf)?;
        // Strings should not end in NULs, but some writers add them.
        while buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn value(&mut self, value_type: u32, depth: usize) -> Result<Value, HeaderError> {
        Ok(match value_type {
            0 => Value::U8(self.bytes::<1>()?[0]),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => match self.bytes::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(malformed(format!("a boolean holds {other}"))),
            },
            8 => Value::String(self.string()?),
            9 if depth < MAX_DEPTH => {
                let element_type = self.u32()?;
                let min_bytes = match element_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    10..=12 => 8,
                    _ => 4,
                };
                let n = self.count(min_bytes)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(element_type, depth + 1)?);
                }
                Value::Array(items)
            }
            9 => return Err(malformed("arrays nested too deep")),
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            other => return Err(malformed(format!("unknown metadata value type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 header by hand: `general.alignment` = 64, one string key, one Q8_0 tensor
    /// `[2, 32]` at offset 0.
    fn header_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&2u64.to_le_bytes()); // metadata entries
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        string(&mut b, "general.alignment");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&64u32.to_le_bytes());
        string(&mut b, "general.name");
        b.extend_from_slice(&8u32.to_le_bytes());
        string(&mut b, "tiny\0");
        string(&mut b, "w");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&32u64.to_le_bytes()); // innermost first
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes()); // Q8_0
        b.extend_from_slice(&0u64.to_le_bytes());
        b
    }

    #[test]
    fn a_hand_written_header_reads_back() {
        let mut bytes = header_bytes();
        let header_len = bytes.len() as u64;
        bytes.resize(200, 0);
        let header = read_header(&mut std::io::Cursor::new(&bytes)).unwrap();
        // The data starts at the next multiple of 64 after the header.
        assert_eq!(header.tensor_data_offset, header_len.div_ceil(64) * 64);
        assert!(
            matches!(header.metadata.get("general.name"), Some(Value::String(s)) if s == "tiny")
        );
        let w = &header.tensor_infos["w"];
        assert_eq!(w.shape, [2, 32]);
        assert_eq!(w.storage, Storage::Candle(GgmlDType::Q8_0));
        // Two Q8_0 blocks of 34 bytes.
        assert_eq!(w.byte_len(), Ok(68));
    }

    #[test]
    fn cut_headers_and_impossible_shapes_are_errors() {
        let bytes = header_bytes();
        for cut in [3, 10, 30, bytes.len() - 1] {
            let result = read_header(&mut std::io::Cursor::new(&bytes[..cut]));
            assert!(
                matches!(result, Err(HeaderError::Malformed(_))),
                "cut at {cut}"
            );
        }
        let huge = StoredTensor {
            storage: Storage::Own(QuantType::Iq4Xs),
            shape: vec![usize::MAX / 2, 4],
            offset: 0,
        };
        assert!(huge.byte_len().unwrap_err().contains("too large"));
        let ragged = StoredTensor {
            shape: vec![3, 100],
            ..huge
        };
        assert!(
            ragged
                .byte_len()
                .unwrap_err()
                .contains("not a whole number")
        );
    }
}
