//! API abuse (issue 22): more tasks than `max_tasks`, names and strings at and over their
//! limits, a deeply nested JSON body. Each through the real binary; each answer is a clear
//! error, and the service keeps answering afterwards.

use serde_json::{Value, json};

use crate::common::free_port;
use crate::common::replication::source_via;
use crate::common::server::{Server, ServerOpts};

fn body(name: &str, key: &str) -> Value {
    json!({"name": name, "cluster_key": key, "source": source_via(free_port()), "start": {"mode": "LATEST"}})
}

#[test]
fn creating_more_tasks_than_max_tasks_is_refused_naming_the_limit() {
    let srv = Server::start(ServerOpts::default().env("BINLOG_SERVER_MAX_TASKS", "2"));
    let mut ids = Vec::new();
    for key in ["one", "two"] {
        let (status, t) = srv.post("/api/tasks", &body(key, key));
        assert_eq!(status, 201, "{t}");
        ids.push(t["id"].as_i64().expect("id"));
    }
    let (status, answer) = srv.post("/api/tasks", &body("three", "three"));
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "TASK_LIMIT_REACHED", "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("limit of 2 tasks") && error.contains("max_tasks"), "{error}");
    let (_, list) = srv.get("/api/tasks");
    assert_eq!(list["total"], 2, "nothing was created: {list}");

    // Deleting one makes room again.
    let (status, _) = srv.delete(&format!("/api/tasks/{}", ids[0]));
    assert_eq!(status, 204);
    let (status, t) = srv.post("/api/tasks", &body("three", "three"));
    assert_eq!(status, 201, "{t}");
}

#[test]
fn names_and_strings_at_their_limits_pass_and_over_them_are_refused() {
    let srv = Server::start(ServerOpts::default());
    // (field, value at the limit, value over it)
    let name_at = "n".repeat(255);
    let key_at = "k".repeat(128);
    let (status, t) = srv.post("/api/tasks", &body(&name_at, &key_at));
    assert_eq!(status, 201, "a name of 255 characters and a key of 128 are allowed: {t}");
    assert_eq!(t["name"], json!(name_at));

    let over: Vec<(&str, Value)> = vec![
        ("name", body(&"n".repeat(256), "over-name")),
        ("cluster_key", body("over-key", &"k".repeat(129))),
        ("source.host", {
            let mut b = body("over-host", "over-host");
            b["source"]["host"] = json!("h".repeat(256));
            b
        }),
        ("source.user", {
            let mut b = body("over-user", "over-user");
            b["source"]["user"] = json!("u".repeat(256));
            b
        }),
    ];
    for (field, b) in over {
        let (status, answer) = srv.post("/api/tasks", &b);
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["code"], "INVALID_REQUEST", "{field}: {answer}");
        let fields: Vec<&str> =
            answer["fields"].as_array().into_iter().flatten().filter_map(|f| f["field"].as_str()).collect();
        assert!(fields.contains(&field), "{field} is named: {answer}");
        // The answer quotes at most a short excerpt of what was sent.
        assert!(answer.to_string().len() < 4096, "{field}: a {} byte answer", answer.to_string().len());
    }
    let (_, list) = srv.get("/api/tasks");
    assert_eq!(list["total"], 1, "only the task at the limits exists: {list}");
}

#[test]
fn a_deeply_nested_json_body_is_refused_and_the_service_keeps_answering() {
    let srv = Server::start(ServerOpts::default());
    for depth in [1_000usize, 30_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for (path, method) in [("/api/tasks", "POST"), ("/api/tasks/1", "PUT")] {
            let answer = match method {
                "POST" => srv.post_raw(path, "application/json", nested.as_bytes()),
                _ => srv.put_raw(path, "application/json", nested.as_bytes()),
            };
            assert!(
                answer.status == 400 || answer.status == 413,
                "{method} {path} with depth {depth}: {} {}",
                answer.status,
                answer.body
            );
            let json = answer.json();
            assert!(matches!(json["code"].as_str(), Some("INVALID_REQUEST" | "PAYLOAD_TOO_LARGE")), "{json}");
        }
    }
    assert_eq!(srv.get_raw("/healthz").body, "ok", "the service still answers");
    let (status, _) = srv.post("/api/tasks", &body("after", "after"));
    assert_eq!(status, 201);
}
