//! The parameter rules a function declares, checked by whoever receives a job.
//!
//! A function publishes its parameters as a JSON Schema (`FunctionDescriptor::parameters`).
//! The gateway and the Kafka bridge check every job against it before anything is published,
//! and the function checks again what it pulls off the bus, so both run the same code: this
//! module. It implements the subset of JSON Schema (2020-12) that describes parameters well,
//! and refuses a schema that uses anything else, so no rule is ever silently ignored:
//!
//! - annotations: `title`, `description`, `default`, `examples`, `$schema`, `$comment`,
//!   `deprecated`, `readOnly`, `writeOnly`;
//! - any value: `type` (one name or a list), `enum`, `const`;
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`;
//! - strings: `minLength`, `maxLength`;
//! - arrays: `items`, `minItems`, `maxItems`, `uniqueItems`;
//! - objects: `properties`, `required`, `additionalProperties` (true, false or a schema),
//!   `dependentRequired`, `dependentSchemas`;
//! - combinations: `allOf`, `anyOf`, `oneOf`, `not`, `if` / `then` / `else`;
//! - one Orbit keyword, `x-orbit-maximum`: `"series_length"` or `"series_length/N"`, a bound
//!   that depends on the job (a window may not be longer than the series it slides over).
//!
//! The top level describes the `parameters` object. Each declared property is taken from the
//! request's `parameters`, else from its `metadata` (where the seed's clients put them), else
//! from its `default`; errors name where the value came from (`parameters.window`,
//! `metadata.window`). A key of `parameters` the schema does not declare is refused when
//! `additionalProperties` is false, so a typo never falls back to a default.

use serde_json::{Map, Value};

use crate::FieldError;

/// A schema that cannot be used: it is malformed or uses a keyword this checker lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter schema{}: {message}", if path.is_empty() { String::new() } else { format!(" at {path}") })]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

impl SchemaError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// What a job's parameters are checked against besides themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// Points in the job's series, when it carries one.
    pub series_length: Option<usize>,
}

/// JSON types as JSON Schema names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    fn parse(name: &str, path: &str) -> Result<Self, SchemaError> {
        Ok(match name {
            "null" => Self::Null,
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "string" => Self::String,
            "array" => Self::Array,
            "object" => Self::Object,
            other => return Err(SchemaError::new(path, format!("unknown type '{other}'"))),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "a boolean",
            Self::Integer => "an integer",
            Self::Number => "a number",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        }
    }

    fn matches(self, value: &Value) -> bool {
        match self {
            Self::Null => value.is_null(),
            Self::Boolean => value.is_boolean(),
            Self::Integer => integral(value).is_some(),
            Self::Number => value.is_number(),
            Self::String => value.is_string(),
            Self::Array => value.is_array(),
            Self::Object => value.is_object(),
        }
    }
}

/// The integer a JSON number stands for, when it is one (`2` and `2.0` alike, as JSON Schema
/// counts them).
fn integral(value: &Value) -> Option<i128> {
    let number = value.as_number()?;
    if let Some(i) = number.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = number.as_u64() {
        return Some(i128::from(u));
    }
    let f = number.as_f64()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i128)
}

/// A bound that depends on the job.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SeriesBound {
    divisor: usize,
}

/// One compiled schema node.
#[derive(Debug, Clone, Default)]
struct Node {
    types: Vec<JsonType>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    items: Option<Box<Node>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    unique_items: bool,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    /// `None`: any other property is allowed.
    additional: Option<Additional>,
    dependent_required: Vec<(String, Vec<String>)>,
    dependent_schemas: Vec<(String, Node)>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    condition: Option<Box<Condition>>,
    default: Option<Value>,
    series_maximum: Option<SeriesBound>,
    /// `false` as a whole schema: nothing is valid.
    never: bool,
}

/// `if` / `then` / `else`.
type Condition = (Node, Option<Node>, Option<Node>);

#[derive(Debug, Clone)]
enum Additional {
    Forbidden,
    Schema(Box<Node>),
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];

fn number(value: &Value, path: &str, keyword: &str) -> Result<f64, SchemaError> {
    value
        .as_f64()
        .ok_or_else(|| SchemaError::new(path, format!("{keyword} must be a number")))
}

fn count(value: &Value, path: &str, keyword: &str) -> Result<usize, SchemaError> {
    value
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| SchemaError::new(path, format!("{keyword} must be a non-negative integer")))
}

fn strings(value: &Value, path: &str, keyword: &str) -> Result<Vec<String>, SchemaError> {
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| SchemaError::new(path, format!("{keyword} must be an array of strings")))
}

fn object<'a>(
    value: &'a Value,
    path: &str,
    keyword: &str,
) -> Result<&'a Map<String, Value>, SchemaError> {
    value
        .as_object()
        .ok_or_else(|| SchemaError::new(path, format!("{keyword} must be an object")))
}

fn schemas(value: &Value, path: &str, keyword: &str) -> Result<Vec<Node>, SchemaError> {
    let items = value
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| SchemaError::new(path, format!("{keyword} must be a non-empty array")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| Node::compile(item, &format!("{path}/{keyword}/{i}")))
        .collect()
}

impl Node {
    fn compile(schema: &Value, path: &str) -> Result<Self, SchemaError> {
        let map = match schema {
            Value::Bool(true) => return Ok(Self::default()),
            Value::Bool(false) => {
                return Ok(Self {
                    never: true,
                    ..Self::default()
                })
            }
            Value::Object(map) => map,
            _ => {
                return Err(SchemaError::new(
                    path,
                    "a schema must be an object or a boolean",
                ))
            }
        };
        let mut node = Self::default();
        for (keyword, value) in map {
            let here = format!("{path}/{keyword}");
            match keyword.as_str() {
                "type" => {
                    node.types = match value {
                        Value::String(name) => vec![JsonType::parse(name, &here)?],
                        Value::Array(_) => strings(value, &here, "type")?
                            .iter()
                            .map(|name| JsonType::parse(name, &here))
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(SchemaError::new(
                                &here,
                                "type must be a string or an array",
                            ))
                        }
                    }
                }
                "enum" => {
                    node.enumeration = Some(
                        value
                            .as_array()
                            .filter(|values| !values.is_empty())
                            .cloned()
                            .ok_or_else(|| {
                                SchemaError::new(&here, "enum must be a non-empty array")
                            })?,
                    )
                }
                "const" => node.constant = Some(value.clone()),
                "minimum" => node.minimum = Some(number(value, &here, keyword)?),
                "maximum" => node.maximum = Some(number(value, &here, keyword)?),
                "exclusiveMinimum" => node.exclusive_minimum = Some(number(value, &here, keyword)?),
                "exclusiveMaximum" => node.exclusive_maximum = Some(number(value, &here, keyword)?),
                "multipleOf" => {
                    let step = number(value, &here, keyword)?;
                    if step <= 0.0 {
                        return Err(SchemaError::new(&here, "multipleOf must be positive"));
                    }
                    node.multiple_of = Some(step);
                }
                "minLength" => node.min_length = Some(count(value, &here, keyword)?),
                "maxLength" => node.max_length = Some(count(value, &here, keyword)?),
                "items" => node.items = Some(Box::new(Self::compile(value, &here)?)),
                "minItems" => node.min_items = Some(count(value, &here, keyword)?),
                "maxItems" => node.max_items = Some(count(value, &here, keyword)?),
                "uniqueItems" => {
                    node.unique_items = value
                        .as_bool()
                        .ok_or_else(|| SchemaError::new(&here, "uniqueItems must be a boolean"))?
                }
                "properties" => {
                    for (name, property) in object(value, &here, keyword)? {
                        let compiled = Self::compile(property, &format!("{here}/{name}"))?;
                        node.properties.push((name.clone(), compiled));
                    }
                }
                "required" => node.required = strings(value, &here, keyword)?,
                "additionalProperties" => {
                    node.additional = match value {
                        Value::Bool(true) => None,
                        Value::Bool(false) => Some(Additional::Forbidden),
                        other => Some(Additional::Schema(Box::new(Self::compile(other, &here)?))),
                    }
                }
                "dependentRequired" => {
                    for (name, needed) in object(value, &here, keyword)? {
                        let needed = strings(needed, &format!("{here}/{name}"), keyword)?;
                        node.dependent_required.push((name.clone(), needed));
                    }
                }
                "dependentSchemas" => {
                    for (name, dependent) in object(value, &here, keyword)? {
                        let compiled = Self::compile(dependent, &format!("{here}/{name}"))?;
                        node.dependent_schemas.push((name.clone(), compiled));
                    }
                }
                "allOf" => node.all_of = schemas(value, path, keyword)?,
                "anyOf" => node.any_of = schemas(value, path, keyword)?,
                "oneOf" => node.one_of = schemas(value, path, keyword)?,
                "not" => node.not = Some(Box::new(Self::compile(value, &here)?)),
                "if" => {
                    let then = map
                        .get("then")
                        .map(|s| Self::compile(s, &format!("{path}/then")))
                        .transpose()?;
                    let otherwise = map
                        .get("else")
                        .map(|s| Self::compile(s, &format!("{path}/else")))
                        .transpose()?;
                    node.condition =
                        Some(Box::new((Self::compile(value, &here)?, then, otherwise)));
                }
                "then" | "else" => {
                    if !map.contains_key("if") {
                        return Err(SchemaError::new(&here, format!("{keyword} without if")));
                    }
                }
                "x-orbit-maximum" => node.series_maximum = Some(series_bound(value, &here)?),
                other if ANNOTATIONS.contains(&other) => {
                    if other == "default" {
                        node.default = Some(value.clone());
                    }
                }
                other => {
                    return Err(SchemaError::new(
                        &here,
                        format!("keyword '{other}' is not supported (see docs/functions.md)"),
                    ))
                }
            }
        }
        Ok(node)
    }

    /// Checks `value` (found at `field`), returning it in canonical form: integers as integers
    /// (`2.0` becomes `2`), defaults of nested objects filled in.
    fn check(&self, value: &Value, field: &str, context: &Context) -> Result<Value, FieldError> {
        if self.never {
            return Err(FieldError::new(field, "is not allowed"));
        }
        if !self.types.is_empty() && !self.types.iter().any(|t| t.matches(value)) {
            let names: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
            return Err(FieldError::new(
                field,
                format!("must be {}", names.join(" or ")),
            ));
        }
        let mut value = canonical_number(value, &self.types);
        if let Some(allowed) = &self.enumeration {
            if !allowed
                .iter()
                .any(|candidate| json_equal(candidate, &value))
            {
                return Err(FieldError::new(
                    field,
                    format!("is {} but must be one of: {}", show(&value), list(allowed)),
                ));
            }
        }
        if let Some(constant) = &self.constant {
            if !json_equal(constant, &value) {
                return Err(FieldError::new(
                    field,
                    format!("must be {}", show(constant)),
                ));
            }
        }
        if let Some(x) = value.as_f64() {
            self.check_number(x, &value, field, context)?;
        }
        if let Some(text) = value.as_str() {
            let chars = text.chars().count();
            if self.min_length.is_some_and(|min| chars < min)
                || self.max_length.is_some_and(|max| chars > max)
            {
                return Err(FieldError::new(
                    field,
                    format!(
                        "must be {} to {} characters long",
                        self.min_length.unwrap_or(0),
                        self.max_length
                            .map_or("any number of".into(), |m| m.to_string())
                    ),
                ));
            }
        }
        if let Value::Array(items) = &mut value {
            self.check_array(items, field, context)?;
        }
        if let Value::Object(map) = &value {
            let checked = self.check_object(map, None, field, context)?;
            value = Value::Object(checked);
        }
        self.check_combinations(&value, field, context)?;
        Ok(value)
    }

    fn check_number(
        &self,
        x: f64,
        value: &Value,
        field: &str,
        context: &Context,
    ) -> Result<(), FieldError> {
        let shown = show(value);
        if let Some(min) = self.minimum.filter(|&min| x < min) {
            return Err(FieldError::new(
                field,
                format!("is {shown} but must be at least {}", show_f64(min)),
            ));
        }
        if let Some(max) = self.maximum.filter(|&max| x > max) {
            return Err(FieldError::new(
                field,
                format!("is {shown} but must be at most {}", show_f64(max)),
            ));
        }
        if let Some(min) = self.exclusive_minimum.filter(|&min| x <= min) {
            return Err(FieldError::new(
                field,
                format!("is {shown} but must be greater than {}", show_f64(min)),
            ));
        }
        if let Some(max) = self.exclusive_maximum.filter(|&max| x >= max) {
            return Err(FieldError::new(
                field,
                format!("is {shown} but must be less than {}", show_f64(max)),
            ));
        }
        if let Some(step) = self.multiple_of {
            let ratio = x / step;
            if (ratio - ratio.round()).abs() > 1e-9 * ratio.abs().max(1.0) {
                return Err(FieldError::new(
                    field,
                    format!("must be a multiple of {}", show_f64(step)),
                ));
            }
        }
        if let (Some(bound), Some(length)) = (self.series_maximum, context.series_length) {
            let limit = length / bound.divisor;
            if x > limit as f64 {
                let what = if bound.divisor == 1 {
                    format!("the series has only {length} values")
                } else {
                    format!(
                        "it may be at most 1/{} of the series length ({length})",
                        bound.divisor
                    )
                };
                return Err(FieldError::new(field, format!("is {shown} but {what}")));
            }
        }
        Ok(())
    }

    fn check_array(
        &self,
        items: &mut [Value],
        field: &str,
        context: &Context,
    ) -> Result<(), FieldError> {
        if self.min_items.is_some_and(|min| items.len() < min)
            || self.max_items.is_some_and(|max| items.len() > max)
        {
            return Err(FieldError::new(
                field,
                format!(
                    "has {} items but must have {} to {}",
                    items.len(),
                    self.min_items.unwrap_or(0),
                    self.max_items
                        .map_or("any number".into(), |m| m.to_string())
                ),
            ));
        }
        if let Some(schema) = &self.items {
            for (index, item) in items.iter_mut().enumerate() {
                *item = schema.check(item, &format!("{field}[{index}]"), context)?;
            }
        }
        if self.unique_items {
            for (index, item) in items.iter().enumerate() {
                if items[..index]
                    .iter()
                    .any(|earlier| json_equal(earlier, item))
                {
                    return Err(FieldError::new(
                        format!("{field}[{index}]"),
                        "repeats an earlier item",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks an object. `fallback` is where declared properties missing from `map` may come
    /// from (the seed's `metadata`, at the top level only), with the prefix naming it.
    fn check_object(
        &self,
        map: &Map<String, Value>,
        fallback: Option<(&Map<String, Value>, &str)>,
        field: &str,
        context: &Context,
    ) -> Result<Map<String, Value>, FieldError> {
        let name_of = |key: &str| {
            if field.is_empty() {
                key.to_string()
            } else {
                format!("{field}.{key}")
            }
        };
        if let Some(Additional::Forbidden) = &self.additional {
            if let Some(key) = map
                .keys()
                .find(|key| !self.properties.iter().any(|(name, _)| name == *key))
            {
                let known: Vec<&str> = self
                    .properties
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect();
                let expected = if known.is_empty() {
                    "this function takes no parameters".to_string()
                } else {
                    format!("expected one of: {}", known.join(", "))
                };
                return Err(FieldError::new(
                    name_of(key),
                    format!("unknown parameter; {expected}"),
                ));
            }
        }
        let mut checked = Map::new();
        for (name, schema) in &self.properties {
            let found = match (map.get(name), fallback) {
                (Some(value), _) => Some((value, name_of(name), false)),
                (None, Some((metadata, prefix))) => metadata
                    .get(name)
                    .map(|v| (v, format!("{prefix}.{name}"), false)),
                (None, None) => None,
            };
            let found = found.or_else(|| schema.default.as_ref().map(|v| (v, name_of(name), true)));
            if let Some((value, where_from, defaulted)) = found {
                let value = schema.check(value, &where_from, context).map_err(|err| {
                    if defaulted {
                        FieldError::new(
                            err.field,
                            format!(
                                "defaults to {} ({}); send a value that fits",
                                show(value),
                                err.message
                            ),
                        )
                    } else {
                        err
                    }
                })?;
                checked.insert(name.clone(), value);
            }
        }
        for (key, value) in map {
            if !checked.contains_key(key) {
                let value = match &self.additional {
                    Some(Additional::Schema(schema)) => {
                        schema.check(value, &name_of(key), context)?
                    }
                    _ => value.clone(),
                };
                checked.insert(key.clone(), value);
            }
        }
        if let Some(missing) = self
            .required
            .iter()
            .find(|name| !checked.contains_key(*name))
        {
            return Err(FieldError::new(name_of(missing), "is required"));
        }
        for (name, needed) in &self.dependent_required {
            if checked.contains_key(name) {
                if let Some(missing) = needed.iter().find(|n| !checked.contains_key(*n)) {
                    return Err(FieldError::new(
                        name_of(missing),
                        format!("is required when {name} is set"),
                    ));
                }
            }
        }
        for (name, schema) in &self.dependent_schemas {
            if map.contains_key(name)
                || fallback.is_some_and(|(metadata, _)| metadata.contains_key(name))
            {
                let object = Value::Object(checked.clone());
                if let Err(err) = schema.check(&object, field, context) {
                    return Err(FieldError::new(
                        name_of(name),
                        format!("is only allowed when {}: {}", err.field, err.message),
                    ));
                }
            }
        }
        Ok(checked)
    }

    fn check_combinations(
        &self,
        value: &Value,
        field: &str,
        context: &Context,
    ) -> Result<(), FieldError> {
        for schema in &self.all_of {
            schema.check(value, field, context)?;
        }
        if !self.any_of.is_empty() {
            let mut first_error = None;
            if !self
                .any_of
                .iter()
                .any(|schema| match schema.check(value, field, context) {
                    Ok(_) => true,
                    Err(err) => {
                        first_error.get_or_insert(err);
                        false
                    }
                })
            {
                return Err(first_error.unwrap_or_else(|| {
                    FieldError::new(field, "matches none of the allowed forms")
                }));
            }
        }
        if !self.one_of.is_empty() {
            let matching = self
                .one_of
                .iter()
                .filter(|s| s.check(value, field, context).is_ok())
                .count();
            if matching != 1 {
                return Err(FieldError::new(
                    field,
                    format!(
                        "must match exactly one of {} allowed forms, matches {matching}",
                        self.one_of.len()
                    ),
                ));
            }
        }
        if let Some(schema) = &self.not {
            if schema.check(value, field, context).is_ok() {
                return Err(FieldError::new(field, "has a value that is not allowed"));
            }
        }
        if let Some(condition) = &self.condition {
            let (test, then, otherwise) = &**condition;
            let branch = if test.check(value, field, context).is_ok() {
                then
            } else {
                otherwise
            };
            if let Some(schema) = branch {
                schema.check(value, field, context)?;
            }
        }
        Ok(())
    }
}

fn series_bound(value: &Value, path: &str) -> Result<SeriesBound, SchemaError> {
    let text = value.as_str().unwrap_or_default().replace(' ', "");
    let divisor = match text.strip_prefix("series_length") {
        Some("") => Some(1),
        Some(rest) => rest
            .strip_prefix('/')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0),
        None => None,
    };
    divisor
        .map(|divisor| SeriesBound { divisor })
        .ok_or_else(|| {
            SchemaError::new(
                path,
                "x-orbit-maximum must be \"series_length\" or \"series_length/N\"",
            )
        })
}

/// Integers stay integers: a value of an `integer` property given as `2.0` becomes `2`, so a
/// function deserializing it into an integer type never sees a float.
fn canonical_number(value: &Value, types: &[JsonType]) -> Value {
    if types.contains(&JsonType::Integer) && !types.contains(&JsonType::Number) {
        if let (Some(i), true) = (integral(value), value.is_f64()) {
            if let Ok(i) = i64::try_from(i) {
                return Value::from(i);
            }
        }
    }
    value.clone()
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (integral(a), integral(b)) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

fn show_f64(x: f64) -> String {
    show(&Value::from(x)).trim_end_matches(".0").to_string()
}

fn list(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A function's parameter schema, compiled once and checked per job.
#[derive(Debug, Clone)]
pub struct ParameterSchema {
    root: Node,
}

impl ParameterSchema {
    /// Compiles `schema`, which must describe an object.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let root = Node::compile(schema, "")?;
        if root.types != [JsonType::Object] {
            return Err(SchemaError::new(
                "",
                "the top level must be {\"type\": \"object\", ...}",
            ));
        }
        for (name, node) in &root.properties {
            if let Some(default) = &node.default {
                node.check(default, name, &Context::default())
                    .map_err(|err| {
                        SchemaError::new(&format!("/properties/{name}/default"), err.to_string())
                    })?;
            }
        }
        Ok(Self { root })
    }

    /// Checks a job's parameters and returns them in canonical form: every declared property
    /// present (from `parameters`, else `metadata`, else its default), numbers normalised.
    pub fn apply(
        &self,
        parameters: &Map<String, Value>,
        metadata: &Map<String, Value>,
        context: &Context,
    ) -> Result<Map<String, Value>, FieldError> {
        let checked = self.root.check_object(
            parameters,
            Some((metadata, "metadata")),
            "parameters",
            context,
        )?;
        self.root
            .check_combinations(&Value::Object(checked.clone()), "parameters", context)?;
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn moving_average() -> ParameterSchema {
        ParameterSchema::compile(&json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "window": {"type": "integer", "minimum": 1, "default": 5, "x-orbit-maximum": "series_length"},
                "kind": {"enum": ["simple", "exponential", "weighted", "sma", "ema", "wma"], "default": "simple"},
                "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
            },
            "dependentSchemas": {
                "alpha": {"properties": {"kind": {"enum": ["exponential", "ema"]}}}
            }
        }))
        .expect("schema compiles")
    }

    fn apply(
        schema: &ParameterSchema,
        parameters: Value,
        metadata: Value,
        n: usize,
    ) -> Result<Map<String, Value>, FieldError> {
        schema.apply(
            parameters.as_object().expect("object"),
            metadata.as_object().expect("object"),
            &Context {
                series_length: Some(n),
            },
        )
    }

    #[test]
    fn defaults_fill_in_and_parameters_win_over_metadata() {
        let schema = moving_average();
        let out = apply(&schema, json!({}), json!({"pattern": "x"}), 10).unwrap();
        assert_eq!(Value::Object(out), json!({"window": 5, "kind": "simple"}));
        let out = apply(&schema, json!({}), json!({"window": 3}), 10).unwrap();
        assert_eq!(out["window"], 3);
        let out = apply(&schema, json!({"window": 2}), json!({"window": 3}), 10).unwrap();
        assert_eq!(out["window"], 2);
    }

    #[test]
    fn errors_name_the_field_and_where_it_came_from() {
        let schema = moving_average();
        let field = |p: Value, m: Value, n: usize| apply(&schema, p, m, n).unwrap_err().field;
        assert_eq!(
            field(json!({"window": 0}), json!({}), 10),
            "parameters.window"
        );
        assert_eq!(
            field(json!({}), json!({"window": 11}), 10),
            "metadata.window"
        );
        assert_eq!(
            field(json!({"window": "x"}), json!({}), 10),
            "parameters.window"
        );
        assert_eq!(
            field(json!({"window": 1.5}), json!({}), 10),
            "parameters.window"
        );
        assert_eq!(
            field(json!({"windw": 2}), json!({}), 10),
            "parameters.windw"
        );
        assert_eq!(
            field(json!({"kind": "median"}), json!({}), 10),
            "parameters.kind"
        );
        assert_eq!(
            field(json!({"alpha": 0.5}), json!({}), 10),
            "parameters.alpha"
        );
        assert_eq!(
            field(json!({"kind": "ema", "alpha": 0}), json!({}), 10),
            "parameters.alpha"
        );
        let err = apply(&schema, json!({}), json!({}), 3).unwrap_err();
        assert_eq!(err.field, "parameters.window");
        assert!(err.message.contains("defaults to 5"), "{err}");
    }

    #[test]
    fn integral_floats_become_integers() {
        let out = apply(&moving_average(), json!({"window": 2.0}), json!({}), 10).unwrap();
        assert!(out["window"].is_i64(), "{out:?}");
        let ok = apply(
            &moving_average(),
            json!({"kind": "ema", "alpha": 0.5}),
            json!({}),
            10,
        )
        .unwrap();
        assert_eq!(ok["alpha"], 0.5);
    }

    #[test]
    fn messages_say_what_is_allowed() {
        let err = apply(&moving_average(), json!({"windw": 2}), json!({}), 10).unwrap_err();
        assert!(err.message.contains("alpha, kind, window"), "{err}");
        let err = apply(&moving_average(), json!({"window": 11}), json!({}), 10).unwrap_err();
        assert!(err.message.contains("only 10 values"), "{err}");
        let err = apply(&moving_average(), json!({"kind": "median"}), json!({}), 10).unwrap_err();
        assert!(err.message.contains("simple, exponential"), "{err}");
    }

    #[test]
    fn arrays_combinations_and_required() {
        let schema = ParameterSchema::compile(&json!({
            "type": "object",
            "required": ["season_length"],
            "properties": {
                "season_length": {"type": "integer", "minimum": 2, "x-orbit-maximum": "series_length/2"},
                "level": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100}, "maxItems": 3, "uniqueItems": true},
                "mode": {"oneOf": [{"const": "a"}, {"const": "b"}]}
            },
            "if": {"properties": {"mode": {"const": "b"}}, "required": ["mode"]},
            "then": {"required": ["level"]}
        }))
        .unwrap();
        let field = |p: Value| apply(&schema, p, json!({}), 20).unwrap_err().field;
        assert_eq!(field(json!({})), "parameters.season_length");
        assert_eq!(
            field(json!({"season_length": 11})),
            "parameters.season_length"
        );
        assert_eq!(
            field(json!({"season_length": 4, "level": [80, 80]})),
            "parameters.level[1]"
        );
        assert_eq!(
            field(json!({"season_length": 4, "level": [80, 100]})),
            "parameters.level[1]"
        );
        assert_eq!(
            field(json!({"season_length": 4, "mode": "c"})),
            "parameters.mode"
        );
        assert_eq!(
            field(json!({"season_length": 4, "mode": "b"})),
            "parameters.level"
        );
        assert!(apply(
            &schema,
            json!({"season_length": 4, "mode": "b", "level": [95]}),
            json!({}),
            20
        )
        .is_ok());
        assert!(apply(
            &schema,
            json!({"season_length": 10, "extra": true}),
            json!({}),
            20
        )
        .is_ok());
    }

    #[test]
    fn unsupported_or_broken_schemas_are_refused() {
        for schema in [
            json!({"type": "object", "properties": {"name": {"type": "string", "pattern": "^a"}}}),
            json!({"type": "array"}),
            json!({"type": "object", "properties": {"w": {"type": "integer", "minimum": 1, "default": 0}}}),
            json!({"type": "object", "properties": {"w": {"type": "integr"}}}),
            json!({"type": "object", "properties": {"w": {"x-orbit-maximum": "length"}}}),
        ] {
            assert!(ParameterSchema::compile(&schema).is_err(), "{schema}");
        }
    }

    #[test]
    fn a_function_without_parameters_refuses_any() {
        let schema =
            ParameterSchema::compile(&json!({"type": "object", "additionalProperties": false}))
                .unwrap();
        let err = apply(&schema, json!({"x": 1}), json!({"window": 3}), 5).unwrap_err();
        assert_eq!(err.field, "parameters.x");
        assert!(err.message.contains("no parameters"), "{err}");
        assert!(apply(&schema, json!({}), json!({"window": 3}), 5)
            .unwrap()
            .is_empty());
    }
}
