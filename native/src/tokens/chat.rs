//! Prompt tokens of a chat request by OpenAI's published formulas.
//!
//! Messages (the cookbook's `num_tokens_from_messages`): 3 per message, plus the tokens of every
//! field's value, plus 1 per `name`, plus 3 that prime the reply. A structured value (content
//! parts, tool calls) counts the text it carries, joined, as one string; `image_url`,
//! `input_audio` and `file` parts count a fixed estimate instead of their (base64) payload.
//!
//! Tools (the cookbook's `num_tokens_for_tools`): per function a start cost plus
//! `name:description`, per property `key:type:description` and its enum items, plus a closing
//! cost once. Descriptions lose one trailing period, as in the published rule.

use super::Encoding;
use crate::json::{Json, Number};
use crate::CoreError;

pub const TOKENS_PER_MESSAGE: i64 = 3;
pub const TOKENS_PER_NAME: i64 = 1;
pub const REPLY_PRIMING_TOKENS: i64 = 3;
/// What a non-text content part (image, audio, file) is charged: the low-detail image cost.
pub const MEDIA_PART_TOKENS: i64 = 85;

const PROPERTIES_START: i64 = 3;
const PROPERTY_KEY: i64 = 3;
const ENUM_START: i64 = -3;
const ENUM_ITEM: i64 = 3;
const FUNCTIONS_END: i64 = 12;

impl Encoding {
    fn function_start_tokens(self) -> i64 {
        match self {
            Encoding::O200kBase => 7,
            Encoding::Cl100kBase => 10,
        }
    }

    /// Tokens of the messages array by the chat formula; `messages` must already be validated.
    pub fn count_messages(self, messages: &[Json<'_>]) -> i64 {
        let mut buffer = String::new();
        let mut total = REPLY_PRIMING_TOKENS;
        for message in messages {
            total += TOKENS_PER_MESSAGE;
            let Json::Object(fields) = message else {
                continue;
            };
            for (key, value) in fields {
                total += self.count_value(value, &mut buffer);
                if key == "name" {
                    total += TOKENS_PER_NAME;
                }
            }
        }
        total
    }

    /// Tokens of the `tools` (or legacy `functions`) definitions; 0 when there are none.
    pub fn count_functions<'a, I>(self, functions: I) -> i64
    where
        I: IntoIterator<Item = &'a Json<'a>>,
    {
        let mut total = 0;
        let mut any = false;
        let mut line = String::new();
        for function in functions {
            any = true;
            total += self.function_start_tokens();
            line.clear();
            push_text(function.get("name").unwrap_or(&Json::Null), &mut line);
            line.push(':');
            push_description(function, &mut line);
            total += self.count_prompt(&line) as i64;
            let properties = function.get("parameters").and_then(|p| p.get("properties"));
            if let Some(Json::Object(properties)) = properties {
                if !properties.is_empty() {
                    total += PROPERTIES_START;
                }
                for (key, property) in properties {
                    total += PROPERTY_KEY + self.count_enum(property);
                    line.clear();
                    line.push_str(key);
                    line.push(':');
                    push_text(property.get("type").unwrap_or(&Json::Null), &mut line);
                    line.push(':');
                    push_description(property, &mut line);
                    total += self.count_prompt(&line) as i64;
                }
            }
        }
        if any {
            total += FUNCTIONS_END;
        }
        total
    }

    /// Prompt tokens of a JSON array of messages, plus optional tool definitions (the
    /// `tools` array, each item wrapping a `function`).
    pub fn count_chat_json(self, messages: &[u8], tools: Option<&[u8]>) -> Result<i64, CoreError> {
        let parse = |body| {
            Json::parse(body).map_err(|err| CoreError::InvalidBody {
                message: format!("not valid JSON: {err}"),
                param: None,
            })
        };
        let Json::Array(messages) = parse(messages)? else {
            return Err(CoreError::InvalidBody {
                message: "messages must be an array".into(),
                param: Some("messages".into()),
            });
        };
        let tools = match tools.map(parse).transpose()? {
            Some(Json::Array(tools)) => tools,
            _ => Vec::new(),
        };
        let functions = tools.iter().filter_map(|tool| tool.get("function"));
        Ok(self.count_messages(&messages) + self.count_functions(functions))
    }

    fn count_enum(self, property: &Json<'_>) -> i64 {
        let Some(Json::Array(items)) = property.get("enum") else {
            return 0;
        };
        let mut buffer = String::new();
        let mut total = ENUM_START;
        for item in items {
            total += ENUM_ITEM + self.count_value(item, &mut buffer);
        }
        total
    }

    fn count_value(self, value: &Json<'_>, buffer: &mut String) -> i64 {
        if let Json::String(text) = value {
            return self.count_prompt(text) as i64;
        }
        buffer.clear();
        let media = push_text(value, buffer);
        self.count_prompt(buffer) as i64 + media
    }
}

fn push_description(object: &Json<'_>, line: &mut String) {
    let start = line.len();
    push_text(object.get("description").unwrap_or(&Json::Null), line);
    if line.len() > start && line.ends_with('.') {
        line.pop();
    }
}

/// Append the text `value` carries; returns the fixed token charge of media parts met.
pub fn push_text(value: &Json<'_>, out: &mut String) -> i64 {
    match value {
        Json::Null => 0,
        Json::String(text) => {
            out.push_str(text);
            0
        }
        Json::Bool(true) => {
            out.push_str("True");
            0
        }
        Json::Bool(false) => {
            out.push_str("False");
            0
        }
        Json::Number(number) => {
            push_number(*number, out);
            0
        }
        Json::Array(items) => items.iter().map(|item| push_text(item, out)).sum(),
        Json::Object(members) => match value.get("type").and_then(Json::as_str) {
            Some("text") => push_text(value.get("text").unwrap_or(&Json::Null), out),
            Some("image_url" | "input_audio" | "file") => MEDIA_PART_TOKENS,
            _ => members
                .iter()
                .filter(|(key, _)| key != "type" && key != "id")
                .map(|(_, member)| push_text(member, out))
                .sum(),
        },
    }
}

fn push_number(number: Number, out: &mut String) {
    use std::fmt::Write;
    // Formatting into a String cannot fail.
    let _ = match number {
        Number::Unsigned(v) => write!(out, "{v}"),
        Number::Signed(v) => write!(out, "{v}"),
        Number::Float(v) => write!(out, "{v:?}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_chat(encoding: Encoding, body: &str) -> i64 {
        let json = Json::parse(body.as_bytes()).unwrap();
        let Json::Array(messages) = json else {
            panic!("array")
        };
        encoding.count_messages(&messages)
    }

    #[test]
    fn cookbook_example_counts() {
        // 3 priming + per message 3 + role + content (+1 and the name for `name`).
        let enc = Encoding::O200kBase;
        let expected = 3
            + 3
            + enc.count("user") as i64
            + enc.count("hi there") as i64
            + 1
            + enc.count("bob") as i64;
        let got = count_chat(
            enc,
            r#"[{"role":"user","content":"hi there","name":"bob"}]"#,
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn content_parts_are_joined_and_media_is_a_fixed_charge() {
        let enc = Encoding::Cl100kBase;
        let body = r#"[{"role":"user","content":[{"type":"text","text":"a b"},
            {"type":"text","text":" c"},{"type":"image_url","image_url":{"url":"data:xyz"}}]}]"#;
        let expected = 6 + enc.count("user") as i64 + enc.count("a b c") as i64 + 85;
        assert_eq!(count_chat(enc, body), expected);
    }

    #[test]
    fn tool_definitions_follow_the_published_rule() {
        let enc = Encoding::O200kBase;
        let tools = Json::parse(
            br#"[{"name":"get_weather","description":"Get the weather.","parameters":{
            "type":"object","properties":{"city":{"type":"string","description":"City."},
            "unit":{"type":"string","enum":["c","f"]}}}}]"#,
        )
        .unwrap();
        let Json::Array(functions) = tools else {
            panic!("array")
        };
        let c = |s: &str| enc.count(s) as i64;
        let expected = 7
            + c("get_weather:Get the weather")
            + 3
            + (3 + c("city:string:City"))
            + (PROPERTY_KEY + (ENUM_START + ENUM_ITEM + c("c") + ENUM_ITEM + c("f")))
            + c("unit:string:")
            + 12;
        assert_eq!(enc.count_functions(&functions), expected);
        assert_eq!(enc.count_functions(&[]), 0);
    }
}
