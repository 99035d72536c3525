//! Everything the request path needs from a raw body, in one pass: the model, stream flags,
//! limits, prompt tokens and the cache key. A body the path cannot serve is an
//! [`CoreError::InvalidBody`] naming the offending parameter.

use std::borrow::Cow;
use std::str::FromStr;

use crate::cache_key::cache_key;
use crate::json::Json;
use crate::tokens::Encoding;
use crate::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

impl FromStr for Endpoint {
    type Err = CoreError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "chat" => Ok(Endpoint::Chat),
            "completions" => Ok(Endpoint::Completions),
            "embeddings" => Ok(Endpoint::Embeddings),
            other => Err(CoreError::UnknownEndpoint(other.to_owned())),
        }
    }
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<i64>,
    pub n: i64,
    pub temperature: Option<f64>,
    pub prompt_tokens: i64,
    /// None unless [`Options::cache_key`] asked for it.
    pub cache_key: Option<u128>,
    /// Where the model name's characters sit in the body (between its quotes), when the body
    /// names the model once and without escapes: a new name can be spliced in there.
    pub model_span: Option<(usize, usize)>,
}

/// Options of [`inspect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The encoding to count in; `None` picks it from the model.
    pub encoding: Option<Encoding>,
    /// Skip counting prompt tokens (`prompt_tokens` is then 0).
    pub count_tokens: bool,
    /// Work out the cache key (a hash of the whole canonical body): only a cache reads it.
    pub cache_key: bool,
}

pub fn inspect(body: &[u8], endpoint: Endpoint, options: Options) -> Result<Facts, CoreError> {
    let payload = Json::parse(body)
        .map_err(|err| invalid(format!("Request body is not valid JSON: {err}"), None))?;
    if !matches!(payload, Json::Object(_)) {
        return Err(invalid("Request body must be a JSON object.".into(), None));
    }
    let model = match payload.get("model") {
        Some(Json::String(model)) if !model.is_empty() => model,
        _ => {
            return Err(invalid(
                "You must provide a model parameter.".into(),
                Some("model"),
            ))
        }
    };
    let encoding = options
        .encoding
        .unwrap_or_else(|| Encoding::for_model(model));
    let prompt_tokens = prompt_tokens(&payload, endpoint, encoding, options.count_tokens)?;
    let stream = optional_bool(&payload, "stream")?.unwrap_or(false);
    let include_usage = match payload.get("stream_options") {
        None | Some(Json::Null) => false,
        Some(options @ Json::Object(_)) => match options.get("include_usage") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(include)) => *include,
            Some(_) => return Err(invalid_type("stream_options.include_usage")),
        },
        Some(_) => return Err(invalid_type("stream_options")),
    };
    let max_tokens = match positive_int(&payload, "max_completion_tokens")? {
        Some(value) => Some(value),
        None => positive_int(&payload, "max_tokens")?,
    };
    let model_span = model_span(body, &payload);
    Ok(Facts {
        model_span,
        model: model.to_string(),
        stream,
        include_usage,
        max_tokens,
        n: positive_int(&payload, "n")?.unwrap_or(1),
        temperature: optional_number(&payload, "temperature")?,
        prompt_tokens,
        cache_key: options
            .cache_key
            .then(|| cache_key(endpoint.name(), &payload)),
    })
}

/// The byte range of `model`'s characters in `body`, when it borrows from the body (no escapes)
/// and is the object's only `model` member (a duplicate would keep the other name upstream).
fn model_span(body: &[u8], payload: &Json<'_>) -> Option<(usize, usize)> {
    let Some(Json::String(Cow::Borrowed(text))) = payload.get("model") else {
        return None;
    };
    let Json::Object(members) = payload else {
        return None;
    };
    if members.iter().filter(|(key, _)| key == "model").count() != 1 {
        return None;
    }
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start + text.len();
    let quoted = start > 0 && body.get(start - 1) == Some(&b'"') && body.get(end) == Some(&b'"');
    quoted.then_some((start, end))
}

fn prompt_tokens(
    payload: &Json<'_>,
    endpoint: Endpoint,
    encoding: Encoding,
    count: bool,
) -> Result<i64, CoreError> {
    match endpoint {
        Endpoint::Chat => chat_prompt_tokens(payload, encoding, count),
        Endpoint::Completions => input_tokens(payload, "prompt", encoding, count),
        Endpoint::Embeddings => input_tokens(payload, "input", encoding, count),
    }
}

fn chat_prompt_tokens(
    payload: &Json<'_>,
    encoding: Encoding,
    count: bool,
) -> Result<i64, CoreError> {
    let messages = match payload.get("messages") {
        Some(Json::Array(messages)) if !messages.is_empty() => messages,
        _ => {
            return Err(invalid(
                "'messages' must be a non-empty array of message objects.".into(),
                Some("messages"),
            ))
        }
    };
    for (index, message) in messages.iter().enumerate() {
        if !matches!(message, Json::Object(_))
            || message.get("role").and_then(Json::as_str).is_none()
        {
            return Err(CoreError::InvalidBody {
                message: format!("messages[{index}] must be an object with a string 'role'."),
                param: Some(format!("messages.[{index}]")),
            });
        }
        // Text or content parts; null where tool calls stand in for it. A number or an object
        // would reach the upstream only to be refused there, after the tokens were reserved.
        if !matches!(
            message.get("content"),
            None | Some(Json::Null | Json::String(_) | Json::Array(_))
        ) {
            return Err(CoreError::InvalidBody {
                message: format!(
                    "Invalid type for 'messages[{index}].content': expected a string, an array \
                     of content parts or null."
                ),
                param: Some(format!("messages.[{index}].content")),
            });
        }
    }
    let tools = function_definitions(payload, "tools", true)?;
    let functions = function_definitions(payload, "functions", false)?;
    if !count {
        return Ok(0);
    }
    let definitions = tools.iter().chain(functions.iter()).copied();
    Ok(encoding.count_messages(messages) + encoding.count_functions(definitions))
}

/// The function objects of `tools` (each wraps one under `function`) or legacy `functions`.
fn function_definitions<'p, 'a>(
    payload: &'p Json<'a>,
    field: &str,
    wrapped: bool,
) -> Result<Vec<&'p Json<'a>>, CoreError> {
    let items = match payload.get(field) {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(items)) => items,
        Some(_) => return Err(invalid(format!("'{field}' must be an array."), Some(field))),
    };
    let mut functions = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let function = if wrapped {
            item.get("function")
        } else {
            Some(item)
        };
        match function {
            Some(function) if function.get("name").and_then(Json::as_str).is_some() => {
                functions.push(function)
            }
            _ => {
                let shape = if wrapped {
                    "with a 'function' that has"
                } else {
                    "with"
                };
                return Err(CoreError::InvalidBody {
                    message: format!("{field}[{index}] must be an object {shape} a string 'name'."),
                    param: Some(format!("{field}.[{index}]")),
                });
            }
        }
    }
    Ok(functions)
}

fn input_tokens(
    payload: &Json<'_>,
    field: &str,
    encoding: Encoding,
    count: bool,
) -> Result<i64, CoreError> {
    let tokens = match payload.get(field) {
        Some(Json::String(text)) => Some(if count {
            encoding.count_prompt(text) as i64
        } else {
            0
        }),
        Some(Json::Array(items)) if !items.is_empty() => array_input_tokens(items, encoding, count),
        _ => None,
    };
    tokens.ok_or_else(|| {
        invalid(
            format!("'{field}' must be a string or a non-empty array of strings or token ids."),
            Some(field),
        )
    })
}

/// Strings are counted, token ids are tokens already; the items must all be of one kind.
fn array_input_tokens(items: &[Json<'_>], encoding: Encoding, count: bool) -> Option<i64> {
    let is_id = |item: &Json<'_>| matches!(item, Json::Number(n) if n.as_i64().is_some());
    if items.iter().all(|item| matches!(item, Json::String(_))) {
        let texts = items.iter().filter_map(Json::as_str);
        return Some(if count {
            texts.map(|t| encoding.count_prompt(t) as i64).sum()
        } else {
            0
        });
    }
    if items.iter().all(is_id) {
        return Some(items.len() as i64);
    }
    let mut total = 0;
    for item in items {
        match item {
            Json::Array(ids) if ids.iter().all(is_id) => total += ids.len() as i64,
            _ => return None,
        }
    }
    Some(total)
}

fn optional_bool(payload: &Json<'_>, name: &str) -> Result<Option<bool>, CoreError> {
    match payload.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(invalid_type(name)),
    }
}

fn optional_number(payload: &Json<'_>, name: &str) -> Result<Option<f64>, CoreError> {
    match payload.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(number)) => Ok(Some(number.as_f64())),
        Some(_) => Err(invalid_type(name)),
    }
}

/// An integer member that must be at least 1 when present.
fn positive_int(payload: &Json<'_>, name: &str) -> Result<Option<i64>, CoreError> {
    let value = match payload.get(name) {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(number)) => number.as_i64().ok_or_else(|| invalid_type(name))?,
        Some(_) => return Err(invalid_type(name)),
    };
    if value < 1 {
        return Err(invalid(format!("{name} must be at least 1."), Some(name)));
    }
    Ok(Some(value))
}

fn invalid_type(name: &str) -> CoreError {
    invalid(format!("Invalid type for '{name}'."), Some(name))
}

fn invalid(message: String, param: Option<&str>) -> CoreError {
    CoreError::InvalidBody {
        message,
        param: param.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests;
