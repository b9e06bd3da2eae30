//! Tensors on the KServe v2 wire: an input's elements read from the request
//! (from `raw_input_contents`, as tritonclient sends them, or from the
//! input's typed `contents`) and an output's elements written as
//! `raw_output_contents` (what tritonclient reads).
//!
//! Nothing here trusts the client: a shape is checked against the elements
//! actually sent, a BYTES element's length prefix against the bytes that
//! follow, and every message names the input and repeats a client's text
//! only bounded ([`mig_serve::limits::shown`]).

use mig_proto::kserve::model_infer_request::InferInputTensor;
use mig_proto::kserve::{DataType, InferTensorContents};
use mig_serve::limits::shown;

use super::error::KserveError;

/// An element type, as the inference messages spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    Bytes,
}

impl Datatype {
    const ALL: [Datatype; 14] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Uint16,
        Datatype::Uint32,
        Datatype::Uint64,
        Datatype::Int8,
        Datatype::Int16,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bf16,
        Datatype::Bytes,
    ];

    /// The name on the wire (`"FP32"`, `"BYTES"`).
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bf16 => "BF16",
            Datatype::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The model configuration's name of the type (BYTES is `TYPE_STRING`).
    pub fn config_type(self) -> DataType {
        match self {
            Datatype::Bool => DataType::TypeBool,
            Datatype::Uint8 => DataType::TypeUint8,
            Datatype::Uint16 => DataType::TypeUint16,
            Datatype::Uint32 => DataType::TypeUint32,
            Datatype::Uint64 => DataType::TypeUint64,
            Datatype::Int8 => DataType::TypeInt8,
            Datatype::Int16 => DataType::TypeInt16,
            Datatype::Int32 => DataType::TypeInt32,
            Datatype::Int64 => DataType::TypeInt64,
            Datatype::Fp16 => DataType::TypeFp16,
            Datatype::Fp32 => DataType::TypeFp32,
            Datatype::Fp64 => DataType::TypeFp64,
            Datatype::Bf16 => DataType::TypeBf16,
            Datatype::Bytes => DataType::TypeString,
        }
    }

    /// Bytes of one element in raw contents; `None` for BYTES, whose
    /// elements each carry their own length.
    fn size(self) -> Option<usize> {
        match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => Some(1),
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => Some(2),
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => Some(4),
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => Some(8),
            Datatype::Bytes => None,
        }
    }
}

/// The elements of one input, in row-major order. The integer types are
/// widened (INT8 to INT64 are `Int`, UINT8 to UINT64 `Uint`); FP16 and BF16
/// are not read (no input takes them).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Uint(Vec<u64>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

impl Values {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Uint(v) => v.len(),
            Values::Fp32(v) => v.len(),
            Values::Fp64(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }
}

/// Most dimensions a shape is shown with in a message.
const SHOWN_DIMS: usize = 8;

/// A shape as messages show it: `[1, 2]`, cut after a few dimensions.
pub fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().take(SHOWN_DIMS).map(i64::to_string).collect();
    if shape.len() > SHOWN_DIMS {
        format!("[{}, … ({} dimensions)]", dims.join(", "), shape.len())
    } else {
        format!("[{}]", dims.join(", "))
    }
}

/// The number of elements a shape holds; an error for a negative
/// dimension (a request's shapes are exact) or a product past `usize`.
pub fn element_count(name: &str, shape: &[i64]) -> Result<usize, KserveError> {
    let bad = |why: &str| KserveError::Shape {
        name: name.to_string(),
        shape: shape_text(shape),
        expected: why.to_string(),
    };
    shape.iter().try_fold(1usize, |count, &dim| {
        let dim = usize::try_from(dim)
            .map_err(|_| bad("dimensions of 0 or more (a request's shape is exact, not -1)"))?;
        count
            .checked_mul(dim)
            .ok_or_else(|| bad("a shape whose element count fits in memory"))
    })
}

/// Reads one input's elements as `datatype`: from `raw` (its entry of
/// `raw_input_contents`) when the request carries raw contents, from its
/// `contents` otherwise. The count must be what its shape says.
pub fn decode(
    input: &InferInputTensor,
    datatype: Datatype,
    raw: Option<&[u8]>,
) -> Result<Values, KserveError> {
    let name = input.name.as_str();
    let count = element_count(name, &input.shape)?;
    let values = match raw {
        Some(raw) => decode_raw(name, datatype, raw, count, &input.shape)?,
        None => decode_contents(name, datatype, input.contents.as_ref())?,
    };
    if values.len() != count {
        return Err(KserveError::Data {
            name: name.to_string(),
            detail: format!(
                "{} {} elements sent; its shape {} holds {count}",
                values.len(),
                datatype.name(),
                shape_text(&input.shape)
            ),
        });
    }
    Ok(values)
}

/// Raw contents: fixed-size elements little-endian and packed; a BYTES
/// element a 4-byte little-endian length, then that many bytes.
fn decode_raw(
    name: &str,
    datatype: Datatype,
    raw: &[u8],
    count: usize,
    shape: &[i64],
) -> Result<Values, KserveError> {
    let data = |detail: String| KserveError::Data {
        name: name.to_string(),
        detail,
    };
    let Some(size) = datatype.size() else {
        return split_bytes(raw).map(Values::Bytes).map_err(data);
    };
    if Some(raw.len()) != count.checked_mul(size) {
        return Err(data(format!(
            "`raw_input_contents` holds {} bytes; its shape {} of {} needs {count} × {size}",
            raw.len(),
            shape_text(shape),
            datatype.name()
        )));
    }
    let chunks = raw.chunks_exact(size);
    // `chunks_exact` yields slices of exactly `size`: the conversions
    // below cannot fail.
    let array = |c: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        a
    };
    let values = match datatype {
        Datatype::Bool => Values::Bool(raw.iter().map(|&b| b != 0).collect()),
        Datatype::Int8 => Values::Int(raw.iter().map(|&b| b as i8 as i64).collect()),
        Datatype::Int16 => Values::Int(
            chunks
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        Datatype::Int32 => Values::Int(
            chunks
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
        Datatype::Int64 => Values::Int(chunks.map(|c| i64::from_le_bytes(array(c))).collect()),
        Datatype::Uint8 => Values::Uint(raw.iter().map(|&b| b as u64).collect()),
        Datatype::Uint16 => Values::Uint(
            chunks
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u64)
                .collect(),
        ),
        Datatype::Uint32 => Values::Uint(
            chunks
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
                .collect(),
        ),
        Datatype::Uint64 => Values::Uint(chunks.map(|c| u64::from_le_bytes(array(c))).collect()),
        Datatype::Fp32 => Values::Fp32(
            chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Datatype::Fp64 => Values::Fp64(chunks.map(|c| f64::from_le_bytes(array(c))).collect()),
        Datatype::Fp16 | Datatype::Bf16 | Datatype::Bytes => {
            return Err(data(format!("{} is not read here", datatype.name())))
        }
    };
    Ok(values)
}

/// BYTES elements of raw contents, each after its 4-byte length.
fn split_bytes(raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut elements = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let index = elements.len();
        let Some((prefix, after)) = rest.split_first_chunk::<4>() else {
            return Err(format!(
                "`raw_input_contents` ends in {} bytes where element {index}'s 4-byte length should be",
                rest.len()
            ));
        };
        let length = u32::from_le_bytes(*prefix) as usize;
        if length > after.len() {
            return Err(format!(
                "`raw_input_contents` element {index} says {length} bytes; {} remain",
                after.len()
            ));
        }
        let (element, after) = after.split_at(length);
        elements.push(element.to_vec());
        rest = after;
    }
    Ok(elements)
}

/// Typed contents: the elements in the one field of the datatype, the
/// other fields empty.
fn decode_contents(
    name: &str,
    datatype: Datatype,
    contents: Option<&InferTensorContents>,
) -> Result<Values, KserveError> {
    let empty = InferTensorContents::default();
    let c = contents.unwrap_or(&empty);
    let (field, values) = match datatype {
        Datatype::Bool => ("bool_contents", Values::Bool(c.bool_contents.clone())),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => (
            "int_contents",
            Values::Int(c.int_contents.iter().map(|&v| v as i64).collect()),
        ),
        Datatype::Int64 => ("int64_contents", Values::Int(c.int64_contents.clone())),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => (
            "uint_contents",
            Values::Uint(c.uint_contents.iter().map(|&v| v as u64).collect()),
        ),
        Datatype::Uint64 => ("uint64_contents", Values::Uint(c.uint64_contents.clone())),
        Datatype::Fp32 => ("fp32_contents", Values::Fp32(c.fp32_contents.clone())),
        Datatype::Fp64 => ("fp64_contents", Values::Fp64(c.fp64_contents.clone())),
        Datatype::Bytes => ("bytes_contents", Values::Bytes(c.bytes_contents.clone())),
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(KserveError::Data {
                name: name.to_string(),
                detail: format!("{} is not read here", datatype.name()),
            })
        }
    };
    let filled = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    if let Some((other, _)) = filled.iter().find(|(f, n)| *f != field && *n > 0) {
        return Err(KserveError::Data {
            name: name.to_string(),
            detail: format!(
                "`contents` has `{other}`; the elements of a {} input go in `{field}`",
                datatype.name()
            ),
        });
    }
    Ok(values)
}

/// Whether an input's `contents` holds any element (a request with raw
/// contents must leave them all empty).
pub fn has_contents(input: &InferInputTensor) -> bool {
    input.contents.as_ref().is_some_and(|c| {
        !(c.bool_contents.is_empty()
            && c.int_contents.is_empty()
            && c.int64_contents.is_empty()
            && c.uint_contents.is_empty()
            && c.uint64_contents.is_empty()
            && c.fp32_contents.is_empty()
            && c.fp64_contents.is_empty()
            && c.bytes_contents.is_empty())
    })
}

/// BYTES elements as text; an element that is not UTF-8 is refused,
/// naming the input and the element.
pub fn utf8(name: &str, elements: Vec<Vec<u8>>) -> Result<Vec<String>, KserveError> {
    elements
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            String::from_utf8(bytes).map_err(|e| KserveError::Data {
                name: name.to_string(),
                detail: format!(
                    "element {i} is not UTF-8 (invalid at byte {})",
                    e.utf8_error().valid_up_to()
                ),
            })
        })
        .collect()
}

/// BYTES elements as raw contents: each a 4-byte little-endian length,
/// then its bytes.
pub fn encode_bytes<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut raw = Vec::new();
    for element in elements {
        // An element is a text the gateway produced, far below 4 GiB.
        let length = u32::try_from(element.len()).unwrap_or(u32::MAX);
        raw.extend_from_slice(&length.to_le_bytes());
        raw.extend_from_slice(element);
    }
    raw
}

/// FP32 elements as raw contents, little-endian and packed.
pub fn encode_fp32(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// A client's name for a tensor or parameter, bounded for a message.
pub fn shown_name(name: &str) -> String {
    shown(name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn raw_bytes_elements_are_length_prefixed() {
        let raw = encode_bytes([b"hello".as_slice(), b"".as_slice(), "é".as_bytes()]);
        assert_eq!(&raw[..9], b"\x05\0\0\0hello");
        let values = decode(
            &input("text_input", "BYTES", &[3]),
            Datatype::Bytes,
            Some(&raw),
        )
        .unwrap();
        let Values::Bytes(elements) = values else {
            panic!("{values:?}")
        };
        assert_eq!(
            utf8("text_input", elements).unwrap(),
            ["hello", "", "é"].map(String::from)
        );
    }

    #[test]
    fn length_prefixes_that_do_not_add_up_are_refused() {
        let t = input("text_input", "BYTES", &[1]);
        // Says 100 bytes, 3 follow.
        let e = decode(&t, Datatype::Bytes, Some(b"\x64\0\0\0abc")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `text_input`: `raw_input_contents` element 0 says 100 bytes; 3 remain"
        );
        // A length cut short.
        let e = decode(&t, Datatype::Bytes, Some(b"\x01\0\0\0a\x02\0")).unwrap_err();
        assert!(
            e.to_string().contains("ends in 2 bytes where element 1's"),
            "{e}"
        );
        // Two elements where the shape says one.
        let two = encode_bytes([b"a".as_slice(), b"b".as_slice()]);
        let e = decode(&t, Datatype::Bytes, Some(&two)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `text_input`: 2 BYTES elements sent; its shape [1] holds 1"
        );
    }

    #[test]
    fn fixed_size_raw_contents_must_fill_the_shape_exactly() {
        let t = input("max_tokens", "INT32", &[1]);
        assert_eq!(
            decode(&t, Datatype::Int32, Some(&(-7i32).to_le_bytes())).unwrap(),
            Values::Int(vec![-7])
        );
        let e = decode(&t, Datatype::Int32, Some(&[1, 2])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `max_tokens`: `raw_input_contents` holds 2 bytes; its shape [1] of INT32 needs 1 × 4"
        );
        let t = input("temperature", "FP32", &[1, 1]);
        assert_eq!(
            decode(&t, Datatype::Fp32, Some(&0.5f32.to_le_bytes())).unwrap(),
            Values::Fp32(vec![0.5])
        );
        let t = input("random_seed", "UINT64", &[1]);
        assert_eq!(
            decode(&t, Datatype::Uint64, Some(&u64::MAX.to_le_bytes())).unwrap(),
            Values::Uint(vec![u64::MAX])
        );
        let t = input("stream", "BOOL", &[1]);
        assert_eq!(
            decode(&t, Datatype::Bool, Some(&[1])).unwrap(),
            Values::Bool(vec![true])
        );
    }

    #[test]
    fn typed_contents_are_read_from_the_field_of_their_type() {
        let mut t = input("text_input", "BYTES", &[2, 1]);
        t.contents = Some(InferTensorContents {
            bytes_contents: vec![b"a".to_vec(), b"b".to_vec()],
            ..Default::default()
        });
        assert_eq!(
            decode(&t, Datatype::Bytes, None).unwrap(),
            Values::Bytes(vec![b"a".to_vec(), b"b".to_vec()])
        );
        let mut t = input("max_tokens", "INT32", &[1]);
        t.contents = Some(InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        });
        let e = decode(&t, Datatype::Int32, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `max_tokens`: `contents` has `fp32_contents`; the elements of a INT32 input go in `int_contents`"
        );
        // No contents at all: zero elements, not the one the shape says.
        let e = decode(&input("max_tokens", "INT32", &[1]), Datatype::Int32, None).unwrap_err();
        assert!(e.to_string().contains("0 INT32 elements sent"), "{e}");
    }

    #[test]
    fn shapes_are_exact_and_bounded() {
        let e = element_count("text_input", &[-1]).unwrap_err();
        assert!(e.to_string().contains("not -1"), "{e}");
        let e = element_count("text_input", &[i64::MAX, i64::MAX]).unwrap_err();
        assert!(e.to_string().contains("fits in memory"), "{e}");
        assert_eq!(element_count("x", &[]).unwrap(), 1);
        assert_eq!(element_count("x", &[3, 0]).unwrap(), 0);
        assert_eq!(
            shape_text(&[1; 20]),
            "[1, 1, 1, 1, 1, 1, 1, 1, … (20 dimensions)]"
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_naming_the_element() {
        let e = utf8("stop_words", vec![b"ok".to_vec(), b"a\xffb".to_vec()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `stop_words`: element 1 is not UTF-8 (invalid at byte 1)"
        );
    }

    #[test]
    fn fp32_outputs_are_little_endian_and_packed() {
        assert_eq!(
            encode_fp32([1.0, -2.0]),
            [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        assert_eq!(Datatype::parse("BYTES"), Some(Datatype::Bytes));
        assert_eq!(Datatype::parse("bytes"), None);
        assert_eq!(Datatype::Bytes.config_type(), DataType::TypeString);
    }
}
