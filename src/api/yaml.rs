//! YAML request bodies (`POST /api/tasks/batch` takes `Content-Type: application/yaml` beside
//! JSON): one YAML document, turned into the JSON value the handler checks as it checks JSON.
//!
//! Only what a task definition needs: mappings with string keys, sequences and scalars. Anchors
//! and aliases are refused (an alias is a copy, and a few nested ones make a short body expand to
//! gigabytes: the "billion laughs"), and so is nesting deeper than [`MAX_DEPTH`]; both are checked
//! on the parser's events before any value is built.

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Deepest nesting of sequences and mappings accepted (a task definition needs 3).
pub const MAX_DEPTH: usize = 16;

/// Whether a `Content-Type` header value names YAML (`application/yaml`, RFC 9512, or the older
/// `application/x-yaml`). Neither is a type a cross-site form can send without a preflight.
pub fn is_yaml_content_type(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.eq_ignore_ascii_case("application/yaml") || essence.eq_ignore_ascii_case("application/x-yaml")
}

/// Whether a `Content-Type` names JSON (`application/json`, parameters ignored).
pub fn is_json_content_type(content_type: &str) -> bool {
    essence(content_type).eq_ignore_ascii_case("application/json")
}

/// A content type without its parameters (`application/json; charset=utf-8` -> `application/json`).
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// The JSON value of a body holding one YAML document, or a message saying what is wrong (with
/// the line where the parser knows it).
pub fn to_json(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the YAML body is not UTF-8: {e}"))?;
    check_events(text)?;
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    match docs.as_slice() {
        [] => Err("the YAML body is empty".into()),
        [doc] => convert(doc, "the document"),
        more => Err(format!("the YAML body holds {} documents; give one", more.len())),
    }
}

/// Refuses anchors, aliases, tags and deep nesting before anything is built.
fn check_events(text: &str) -> Result<(), String> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| format!("invalid YAML: {e}"))?;
        let line = mark.line();
        let anchored = match &event {
            Event::StreamEnd => return Ok(()),
            Event::Alias(_) => {
                return Err(format!("YAML aliases (*name) are not accepted (line {line}): write the values out"));
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("the YAML body nests deeper than {MAX_DEPTH} levels (line {line})"));
                }
                (*anchor, tag.is_some())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                (0, false)
            }
            Event::Scalar(_, _, anchor, tag) => (*anchor, tag.is_some()),
            _ => (0, false),
        };
        match anchored {
            (0, false) => {}
            (_, false) => {
                return Err(format!("YAML anchors (&name) are not accepted (line {line}): write the values out"));
            }
            (_, true) => return Err(format!("YAML tags (!name) are not accepted (line {line})")),
        }
    }
}

fn convert(y: &Yaml, at: &str) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => {
            // `.inf` and `.nan` do not parse here, and JSON has no such numbers either.
            let not = || format!("{at}: {text:?} is not a finite number (JSON has no other)");
            let f: f64 = text.parse().map_err(|_| not())?;
            Value::Number(Number::from_f64(f).ok_or_else(not)?)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(
            items.iter().enumerate().map(|(i, v)| convert(v, &format!("{at}, item {i}"))).collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let Yaml::String(key) = k else {
                    return Err(format!("{at}: a mapping key is not a string ({k:?}); quote it"));
                };
                m.insert(key.clone(), convert(v, &format!("{at}, key {key:?}"))?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err(format!("{at}: a value YAML could not read")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_bodies_become_json_or_say_why_not() {
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let ok_deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let ok_deep_json = (0..MAX_DEPTH).fold(json!(1), |v, _| json!([v]));
        let cases: Vec<(&str, &str, Result<Value, &str>)> = vec![
            (
                "a list of definitions",
                "- name: orders\n  cluster_key: orders-1\n  source: {host: db1, port: 3306, password: 'x: y'}\n",
                Ok(json!([{"name": "orders", "cluster_key": "orders-1",
                           "source": {"host": "db1", "port": 3306, "password": "x: y"}}])),
            ),
            (
                "the JSON shape, in YAML",
                "tasks:\n  - name: a\nstart: true\n",
                Ok(json!({"tasks": [{"name": "a"}], "start": true})),
            ),
            ("JSON is YAML", r#"{"tasks": [], "start": false}"#, Ok(json!({"tasks": [], "start": false}))),
            (
                "scalars keep their YAML 1.2 types",
                "a: 1\nb: 1.5\nc: null\nd: yes\ne: '3306'\nf: ~\n",
                Ok(json!({"a": 1, "b": 1.5, "c": null, "d": "yes", "e": "3306", "f": null})),
            ),
            ("nesting at the limit", ok_deep.as_str(), Ok(ok_deep_json)),
            ("an alias", "a: &x {p: 1}\nb: *x\n", Err("anchors")),
            ("a lone alias", "- *x\n", Err("invalid YAML")),
            ("an anchored scalar", "a: &x 1\n", Err("anchors")),
            ("a tag", "a: !!binary aGk=\n", Err("tags")),
            ("too deep", deep.as_str(), Err("nests deeper")),
            ("two documents", "a: 1\n---\nb: 2\n", Err("2 documents")),
            ("empty", "", Err("empty")),
            ("a key that is not a string", "? [1, 2]\n: v\n", Err("key is not a string")),
            ("an integer key", "1: v\n", Err("key is not a string")),
            ("not YAML", "a: [1, 2\n", Err("invalid YAML")),
            ("an infinite number", "a: .inf\n", Err("finite")),
        ];
        for (what, input, want) in cases {
            let got = to_json(input.as_bytes());
            match (&want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{what}"),
                (Err(part), Err(msg)) => assert!(msg.contains(part), "{what}: {msg:?} should mention {part:?}"),
                _ => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        assert!(to_json(&[0xff, 0xfe]).is_err_and(|m| m.contains("UTF-8")));
    }

    #[test]
    fn yaml_content_types() {
        for (ct, yaml) in [
            ("application/yaml", true),
            ("Application/YAML; charset=utf-8", true),
            ("application/x-yaml", true),
            ("text/yaml", false),
            ("application/json", false),
            ("text/plain", false),
        ] {
            assert_eq!(is_yaml_content_type(ct), yaml, "{ct}");
        }
        for (ct, json) in [
            ("application/json", true),
            (" Application/JSON ; charset=utf-8", true),
            ("application/json-seq", false),
            ("text/json", false),
            ("application/yaml", false),
            ("", false),
        ] {
            assert_eq!(is_json_content_type(ct), json, "{ct:?}");
        }
    }
}
