//! The dashboard: `GET /ui`, one page built into the binary.
//!
//! The page lists every model live from the watch stream (`GET /events`) and shows a
//! model's tasks, events, history and logs tail, with rollback and delete buttons that
//! send the token entered on the page. It is plain HTML, CSS and JavaScript with no
//! framework and no build step (see `ui/app.js`); the style and script are inlined into
//! the HTML once, at first request, so the page is one response, usable on first paint,
//! and fetches nothing from outside this server.
//!
//! The answer carries a Content-Security-Policy that allows exactly the inlined style
//! and script (by their SHA-256) and connections to this server only: text a model's
//! status carries (a message, an image name) can never run as script, and no other site
//! can frame the page's buttons.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const HTML: &str = include_str!("ui/index.html");
const STYLE: &str = include_str!("ui/app.css");
const SCRIPT: &str = include_str!("ui/app.js");

/// Where the style and the script go in [`HTML`].
const STYLE_SLOT: &str = "/*STYLE*/";
const SCRIPT_SLOT: &str = "/*SCRIPT*/";

/// The page as served, and its Content-Security-Policy.
struct Page {
    html: String,
    policy: String,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| Page {
    html: HTML
        .replacen(STYLE_SLOT, STYLE, 1)
        .replacen(SCRIPT_SLOT, SCRIPT, 1),
    policy: format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    ),
});

/// The CSP source for an inline element's exact text: `sha256-<base64>`.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `GET /ui`: the dashboard.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE.policy.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The page is part of the binary: a new version must not be served stale.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.html.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_style_and_script_once() {
        assert_eq!(HTML.matches(STYLE_SLOT).count(), 1);
        assert_eq!(HTML.matches(SCRIPT_SLOT).count(), 1);
        assert!(PAGE.html.contains(STYLE) && PAGE.html.contains(SCRIPT));
        assert!(!PAGE.html.contains(STYLE_SLOT) && !PAGE.html.contains(SCRIPT_SLOT));
    }

    #[test]
    fn the_policy_allows_exactly_the_inlined_style_and_script() {
        // The hash of the text between the tags, as a browser computes it.
        let inner = |open: &str, close: &str| {
            PAGE.html
                .split_once(open)
                .and_then(|(_, rest)| rest.split_once(close))
                .map(|(inner, _)| inner)
                .unwrap_or_else(|| panic!("one {open} in the page"))
        };
        let script = inner("<script>", "</script>");
        let style = inner("<style>", "</style>");
        assert!(
            PAGE.policy
                .contains(&format!("script-src '{}'", csp_hash(script)))
        );
        assert!(
            PAGE.policy
                .contains(&format!("style-src '{}'", csp_hash(style)))
        );
        assert!(PAGE.policy.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn the_page_loads_nothing_from_outside_the_server() {
        for outside in ["http://", "https://", "//cdn", "src=\"/"] {
            assert!(!PAGE.html.contains(outside), "the page refers to {outside}");
        }
    }
}
