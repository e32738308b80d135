//! JSON Schemas of core's values for the API contract (OpenAPI 3.1): each value type states
//! what its parser accepts, next to the parser, and the request bodies built from these types
//! take them from here. `ops/contract.sh` checks the document against a running server.

use serde_json::{Value, json};
use utoipa::openapi::{RefOr, schema::Schema};

/// A schema written as JSON Schema.
///
/// # Panics
/// When `v` is not a schema utoipa can represent: a programming error caught by the tests of
/// the document.
pub fn from_json(v: Value) -> RefOr<Schema> {
    serde_json::from_value(v).expect("a valid JSON Schema")
}

/// Implements [`utoipa::ToSchema`] for a type from a JSON Schema expression.
macro_rules! json_schema {
    ($ty:ty, $name:expr, $schema:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::schema::from_json($schema)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
pub(crate) use json_schema;

/// A code as in a capability or an agency: a letter, then letters, digits, `_` and `-`
/// (upper case is accepted and stored lower-cased).
pub(crate) fn slug(max: usize, description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max,
           "pattern": "^[A-Za-z][A-Za-z0-9_-]*$", "description": description})
}

/// One of the codes, as the API writes them (input is accepted in either case).
pub(crate) fn codes(codes: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": codes, "description": description})
}
