//! The Python code on a span: the function that handled a request or made a call.
use super::{semconv, Attributes};
use crate::cpython::code::CodeInfo;

/// OpenTelemetry's `code.*` attributes for `code`.
pub fn insert(attributes: &mut Attributes, code: &CodeInfo) {
    attributes.insert(semconv::CODE_FUNCTION_NAME.into(), code.qualname.clone().into());
    attributes.insert(semconv::CODE_FILE_PATH.into(), code.file.clone().into());
    attributes.insert(semconv::CODE_LINE_NUMBER.into(), code.first_line.into());
}
