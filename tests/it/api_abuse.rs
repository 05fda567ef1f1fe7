//! API abuse (issue 22): more tasks than `max_tasks`, names and strings at and over their
//! limits, a deeply nested JSON body. Each through the real binary; each answer is a clear
//! error, and the service keeps answering afterwards.

use binlog_server::api::dto::TaskPage;
use binlog_server::api::error::ErrorCode;
use binlog_server::domain::{DesiredState, TaskState};
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
        ids.push(srv.create(&body(key, key)).id);
    }
    let (status, answer) = srv.error("POST", "/api/tasks", Some(&body("three", "three")));
    assert_eq!((status, answer.code), (409, ErrorCode::TaskLimitReached), "{answer:?}");
    let error = answer.error;
    assert!(error.contains("limit of 2 tasks") && error.contains("max_tasks"), "{error}");
    assert_eq!(srv.get_as::<TaskPage>("/api/tasks").total, 2, "nothing was created");

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
    let t = srv.create(&body(&name_at, &key_at));
    assert_eq!(t.name, name_at, "a name of 255 characters and a key of 128 are allowed");

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
    assert_eq!(srv.get_as::<TaskPage>("/api/tasks").total, 1, "only the task at the limits exists");
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

/// 1,000 start/stop/delete requests from 16 clients at once on four tasks of a real source
/// (two of which may be deleted):
/// every answer is a decision (never a server error), and afterwards no task is between two
/// states, each is where its operator last asked it to be, its start/stop events alternate,
/// the source serves exactly one dump per running task (no orphan replication actor), and the
/// running ones still stream.
#[test]
fn a_thousand_concurrent_start_stop_delete_requests_leave_every_task_settled() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::common::mariadb::{MariaDb, MariaDbOpts};
    use crate::common::poll_until;
    use crate::common::replication::{
        WAIT, api_checkpoint, binlog_dump_threads, create_task, fast_server_opts, from_first_file, source_json,
        stop_task, task_events, wait_checkpoint_moves,
    };

    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Arc::new(Server::start(fast_server_opts()));
    let ids: Vec<i64> =
        (0..4).map(|i| create_task(&srv, &format!("churn-{i}"), source_json(&db), from_first_file(&db))).collect();
    let ids = Arc::new(ids);
    let statuses: Vec<BTreeMap<(String, u16), usize>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16u64)
            .map(|client| {
                let (srv, ids) = (srv.clone(), ids.clone());
                scope.spawn(move || {
                    let mut seen = BTreeMap::new();
                    // A small LCG per client: the same interleaving of requests every run.
                    let mut x = client.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..1000 / 16 + usize::from(client < 1000 % 16) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let id = ids[(x >> 33) as usize % ids.len()];
                        // Only the first two tasks may be deleted: the others always remain.
                        let (op, status) = match (x >> 40) % 20 {
                            0 if id <= ids[1] => ("delete", srv.delete(&format!("/api/tasks/{id}")).0),
                            1..=10 => ("start", srv.post(&format!("/api/tasks/{id}/start"), &json!({})).0),
                            _ => ("stop", srv.post(&format!("/api/tasks/{id}/stop"), &json!({})).0),
                        };
                        *seen.entry((op.to_string(), status)).or_insert(0) += 1;
                    }
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a client thread")).collect()
    });
    let mut total: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for s in statuses {
        for (k, n) in s {
            *total.entry(k).or_insert(0) += n;
        }
    }
    eprintln!("answers (op, status) -> count: {total:?}");
    assert_eq!(total.values().sum::<usize>(), 1000);
    for ((op, status), n) in &total {
        assert!(matches!(status, 200 | 204 | 404 | 409), "{n} {op} requests answered {status}: {total:?}");
    }

    // Afterwards: every remaining task settles where it was last asked to be.
    let mut running = Vec::new();
    for &id in ids.iter() {
        let (status, _) = srv.get(&format!("/api/tasks/{id}"));
        if status == 404 {
            continue;
        }
        let deadline = std::time::Instant::now() + WAIT;
        let t = loop {
            let t = srv.task(id);
            let settled = matches!(
                (t.desired_state, t.state),
                (DesiredState::Running, TaskState::Running) | (DesiredState::Stopped, TaskState::Stopped)
            );
            if settled {
                break t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "task {id} did not settle in its desired state within {WAIT:?}: {t:?}\nevents: {:?}\n{}",
                task_events(&srv, id).into_iter().take(12).collect::<Vec<_>>(),
                srv.diagnostics()
            );
            // The polling interval, not synchronisation: the state is what is waited for.
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        if t.state == TaskState::Running {
            running.push(id);
        }
        // Its start and stop events alternate, beginning with a start, ending as it is now.
        let marks: Vec<String> = task_events(&srv, id)
            .into_iter()
            .rev()
            .map(|e| e.1)
            .filter(|e| e == "TASK_STARTED" || e == "TASK_STOPPED")
            .collect();
        for (i, pair) in marks.windows(2).enumerate() {
            assert_ne!(pair[0], pair[1], "task {id}: two {} in a row at {i}: {marks:?}", pair[0]);
        }
        let expected_last = if t.state == TaskState::Running { "TASK_STARTED" } else { "TASK_STOPPED" };
        if let Some(last) = marks.last() {
            assert_eq!(last, expected_last, "task {id} is {}: {marks:?}", t.state);
        }
    }
    eprintln!("running afterwards: {running:?}");
    // One dump thread per running task: no replication actor survived its task's stop or delete.
    poll_until(WAIT, "one binlog dump per running task on the source", || {
        (binlog_dump_threads(&db).len() == running.len()).then_some(())
    });
    // The running ones still stream; then they stop cleanly.
    db.sql("CREATE TABLE churn (id INT PRIMARY KEY)");
    for &id in &running {
        let before = api_checkpoint(&srv, id);
        db.sql(&format!("INSERT INTO churn VALUES ({id})"));
        wait_checkpoint_moves(&srv, id, before.as_ref());
        stop_task(&srv, id);
    }
    poll_until(WAIT, "every dump to end once every task is stopped", || {
        binlog_dump_threads(&db).is_empty().then_some(())
    });
}
