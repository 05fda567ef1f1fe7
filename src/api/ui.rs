//! The operator UI at `/ui/`: plain HTML, CSS and JavaScript modules from `static/ui/`, compiled
//! into the binary (a release is one file), or read from disk when `ui.dev_dir` is set.
//!
//! The UI is a client of `/api` like any other: it holds no business logic and no route here is
//! behind auth (the page asks for the token when the API answers 401). It must never load
//! anything from another origin: the Content-Security-Policy below forbids it. The same security
//! headers reach every other answer through `security_headers` (Swagger UI with a policy of its
//! own).

use std::path::PathBuf;
use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::api::error::{ApiError, ErrorCode};

/// Where the UI's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiSource {
    /// The copies compiled into the binary (the default).
    Embedded,
    /// A directory read at every request (`ui.dev_dir`): edit, reload, no rebuild.
    Dir(PathBuf),
}

impl UiSource {
    /// `Dir` when `dev_dir` is set, else `Embedded`.
    pub fn from_dev_dir(dev_dir: &str) -> Self {
        if dev_dir.is_empty() { UiSource::Embedded } else { UiSource::Dir(PathBuf::from(dev_dir)) }
    }
}

/// One file of `static/ui/`, by its path under `/ui/`.
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/ui/", $path)) }),*]
    };
}

/// Every file of `static/ui/`. A unit test fails when a file there is missing from this list.
pub const ASSETS: &[Asset] = assets![
    "index.html",
    "app.css",
    "favicon.svg",
    "js/api.js",
    "js/chart.js",
    "js/dialogs.js",
    "js/dom.js",
    "js/format.js",
    "js/main.js",
    "js/window.js",
    "js/views/dashboard.js",
    "js/views/detail.js",
    "js/views/form.js",
    "js/views/import.js",
    "js/views/tasks.js",
];

/// Same-origin only: no CDN, no inline script, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The `Content-Type` of a UI file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Strong ETags of the embedded files, computed once: the names carry no version, so browsers
/// revalidate every time (`no-cache`) and get a 304 until the binary changes.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS.iter().map(|a| format!("\"{}-{:08x}\"", a.bytes.len(), crc32fast::hash(a.bytes))).collect()
    })
}

/// What the Swagger UI (`/swagger/`, from utoipa-swagger-ui) needs: its own scripts and the
/// inline styles its components set; nothing from another origin, no framing.
const SWAGGER_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                           img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
                           base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every other answer (JSON, metrics, errors) is no document: it runs nothing and is framed by
/// nobody.
const DATA_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Middleware for every route: the headers the UI's pages carry, on every answer that does not
/// set its own (`/swagger` gets a policy of its own).
pub async fn security_headers(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let csp = if req.path().starts_with("/swagger") { SWAGGER_CSP } else { DATA_CSP };
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    Ok(res)
}

fn security_headers_of_the_ui(resp: &mut HttpResponse) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// `GET /ui/{path}`: an embedded file (`index.html` for `/ui/`), or 404.
async fn embedded(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let tail = req.match_info().get("path").unwrap_or_default();
    let path = if tail.is_empty() { "index.html" } else { tail };
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no UI file {path:?}"))
            .error_response();
    };
    let etag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().content_type(content_type(path)).body(ASSETS[i].bytes)
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    security_headers_of_the_ui(&mut resp);
    resp
}

/// `/` and `/ui` redirect to `/ui/`; `/ui/...` serves the UI from `source`. No route is guarded.
pub fn configure(cfg: &mut web::ServiceConfig, source: &UiSource) {
    cfg.route("/", web::get().to(|| async { super::redirect("/ui/") }))
        .route("/ui", web::get().to(|| async { super::redirect("/ui/") }));
    match source {
        UiSource::Embedded => {
            cfg.service(
                super::resource("/ui/{path:.*}", "GET, HEAD")
                    .route(web::get().to(embedded))
                    .route(web::head().to(embedded)),
            );
        }
        UiSource::Dir(dir) => {
            cfg.service(
                web::scope("/ui")
                    .wrap(
                        actix_web::middleware::DefaultHeaders::new()
                            .add((header::CACHE_CONTROL, "no-store"))
                            .add((header::CONTENT_SECURITY_POLICY, CSP))
                            .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
                    )
                    .service(actix_files::Files::new("", dir).index_file("index.html")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use actix_web::App;
    use actix_web::test as web_test;

    use super::*;

    fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("static/ui is readable") {
            let entry = entry.expect("a directory entry");
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().expect("a file type").is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    #[test]
    fn every_file_of_static_ui_is_embedded() {
        let mut on_disk = BTreeSet::new();
        files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("static/ui"), "", &mut on_disk);
        let listed: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        assert_eq!(on_disk, listed, "ASSETS in src/api/ui.rs must list exactly the files of static/ui/");
        for a in ASSETS {
            assert_ne!(content_type(a.path), "application/octet-stream", "{}: unknown extension", a.path);
        }
    }

    #[actix_web::test]
    async fn serves_embedded_files_with_type_etag_and_revalidation() {
        let app = web_test::init_service(App::new().configure(|c| configure(c, &UiSource::Embedded))).await;
        let resp = web_test::call_service(&app, web_test::TestRequest::get().uri("/").to_request()).await;
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers().get(header::LOCATION).unwrap(), "/ui/");
        let resp = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui").to_request()).await;
        assert_eq!(resp.headers().get(header::LOCATION).unwrap(), "/ui/");

        let resp = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/").to_request()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "text/html; charset=utf-8");
        assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "no-cache");
        assert!(resp.headers().get(header::CONTENT_SECURITY_POLICY).is_some());
        let etag = resp.headers().get(header::ETAG).unwrap().clone();
        let body = web_test::read_body(resp).await;
        assert!(body.starts_with(b"<!doctype html>"), "{:?}", String::from_utf8_lossy(&body[..40]));

        let again = web_test::TestRequest::get()
            .uri("/ui/index.html")
            .insert_header((header::IF_NONE_MATCH, etag))
            .to_request();
        assert_eq!(web_test::call_service(&app, again).await.status(), 304);

        let js = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/js/main.js").to_request()).await;
        assert_eq!(js.headers().get(header::CONTENT_TYPE).unwrap(), "text/javascript; charset=utf-8");
        let missing = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/nope.js").to_request()).await;
        assert_eq!(missing.status(), 404);
        let post = web_test::call_service(&app, web_test::TestRequest::post().uri("/ui/").to_request()).await;
        assert_eq!(post.status(), 405);
    }

    #[actix_web::test]
    async fn dev_dir_serves_files_from_disk_uncached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html><p>dev copy</p>").unwrap();
        let source = UiSource::from_dev_dir(dir.path().to_str().unwrap());
        let app = web_test::init_service(App::new().configure(|c| configure(c, &source))).await;
        let resp = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/").to_request()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
        assert_eq!(web_test::read_body(resp).await, "<!doctype html><p>dev copy</p>");
        let resp = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/index.html").to_request()).await;
        assert_eq!(resp.status(), 200);
    }
}
