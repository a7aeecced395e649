//! The dashboard (`GET /ui`) in a real headless Chromium, over a model deployed on the real
//! swarm: the model appears with its phase; a new deployment, a restart of the server and
//! a delete show without a reload; the model page shows its tasks, events, history and
//! logs; its buttons need the token. Screenshots are saved under the target directory.

mod common;

use common::browser::{Browser, Page};
use common::server::Server;
use common::{swarm, unique_name};
use std::path::PathBuf;
use std::time::Duration;

const TOKEN: &str = "ui-test-token";
const TIMEOUT: Duration = Duration::from_secs(90);

fn body(tag: u32, scale: u32) -> String {
    format!(
        r#"{{"domain": "ui.example.com", "build_id": "build-{tag}", "run_id": "run-{tag}", "image": "mlmodel-test/static-http:{tag}", "scale": {scale}, "cpu_reservation": "0.01", "mem_limit": "64M", "mem_reservation": "8M", "deploy_delay": "1s", "deploy_monitor_period": "1s"}}"#
    )
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ui-screenshots")
        .join(name)
}

/// A JavaScript expression: the text of `cell` in the list's row of `model`, or null.
fn cell(model: &str, cell: &str) -> String {
    format!(
        "((document.querySelector('#models tr[data-model=\"{model}\"] .{cell}') || {{}}).textContent ?? null)"
    )
}

/// Waits until the list's row of `model` shows `phase` and `ready`.
async fn wait_row(page: &mut Page, model: &str, phase: &str, ready: &str) {
    let check = format!(
        "{} === '{phase}' && {} === '{ready}'",
        cell(model, "phase-cell"),
        cell(model, "ready")
    );
    page.wait_for(
        &format!("{model} {phase} {ready} in the list"),
        &check,
        TIMEOUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_models_live_and_its_buttons_need_the_token() {
    if swarm().await.is_none() {
        return;
    }
    let Some(browser) = Browser::launch() else {
        return;
    };
    let mut server = Server::start_with(&unique_name("ui"), &["--token", TOKEN]);
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let (code, answer) = server.request_with_headers("POST", "/um", Some(&body(1, 1)), &headers);
    assert_eq!(code, 200, "{answer}");
    // And one a manifest declares: its page's buttons are off (the API would refuse).
    server.write_manifest("fm.yml", &common::server::manifest(1, "1"));
    server.wait_for("um and fm Available", TIMEOUT, || {
        server.phase("um").as_deref() == Some("Available")
            && server.phase("fm").as_deref() == Some("Available")
    });

    // The list: the model with its phase, ready replicas and image, from the stream.
    let mut page = browser.page().await;
    page.navigate(&format!("{}/ui", server.url)).await;
    wait_row(&mut page, "um", "Available", "1/1").await;
    wait_row(&mut page, "fm", "Available", "1/1").await;
    assert_eq!(
        page.eval(&cell("um", "image")).await,
        "mlmodel-test/static-http:1"
    );
    assert_eq!(
        page.eval("document.getElementById('counts').textContent")
            .await,
        "2 models: 2 Available"
    );
    page.wait_for(
        "the live badge",
        "document.getElementById('live').textContent === 'live'",
        TIMEOUT,
    )
    .await;
    // Anything a reload would lose.
    page.eval("window.__sameDocument = 42").await;
    let shot = screenshot_path("models.png");
    assert!(page.screenshot(&shot).await > 1000);
    eprintln!("screenshot: {}", shot.display());

    // A new deployment shows without a reload: the new image, then both replicas.
    let (code, answer) = server.request_with_headers("POST", "/um", Some(&body(2, 2)), &headers);
    assert_eq!(code, 200, "{answer}");
    page.wait_for(
        "the new image in the list",
        &format!("{} === 'mlmodel-test/static-http:2'", cell("um", "image")),
        TIMEOUT,
    )
    .await;
    wait_row(&mut page, "um", "Available", "2/2").await;
    assert_eq!(page.eval("window.__sameDocument").await, 42);

    // The stream drops with the server; the page says so, reconnects by itself when the
    // server is back, and follows changes again.
    server.stop();
    page.wait_for(
        "the page to notice the stream dropped",
        "document.getElementById('live').textContent !== 'live'",
        TIMEOUT,
    )
    .await;
    server.spawn();
    page.wait_for(
        "the page to reconnect",
        "document.getElementById('live').textContent === 'live'",
        TIMEOUT,
    )
    .await;
    wait_row(&mut page, "um", "Available", "2/2").await;
    assert_eq!(page.eval("window.__sameDocument").await, 42);

    // The model page, reached by its link: tasks, events, history and logs.
    page.eval("document.querySelector('#models tr[data-model=\"um\"] a').click()")
        .await;
    page.wait_for(
        "two running tasks on the model page",
        "document.querySelectorAll('#m-tasks tbody tr').length === 2 && \
         [...document.querySelectorAll('#m-tasks tbody tr')].every(r => r.textContent.includes('Running'))",
        TIMEOUT,
    )
    .await;
    page.wait_for(
        "the model's events",
        "['Recorded', 'Created', 'Updated', 'Available'].every(r => \
           document.querySelector('#m-events tr[data-reason=\"' + r + '\"]'))",
        TIMEOUT,
    )
    .await;
    page.wait_for(
        "two deployments in the history",
        "document.querySelectorAll('#m-history tbody tr').length === 2",
        TIMEOUT,
    )
    .await;
    page.wait_for(
        "the logs tail",
        "document.getElementById('m-logs').textContent.includes('static-http-server: listening on')",
        TIMEOUT,
    )
    .await;
    assert_eq!(page.eval("window.__sameDocument").await, 42);
    let shot = screenshot_path("model.png");
    assert!(page.screenshot(&shot).await > 1000);
    eprintln!("screenshot: {}", shot.display());

    // The manifest's model cannot be rolled back or deleted from the page.
    page.eval("location.hash = '#/fm'").await;
    page.wait_for(
        "fm's page with its buttons off",
        "document.getElementById('m-name').textContent === 'fm' && \
         document.getElementById('m-delete').disabled && \
         document.getElementById('m-rollback').disabled && \
         document.getElementById('m-delete').title.includes('fm.yml')",
        TIMEOUT,
    )
    .await;
    page.eval("location.hash = '#/um'").await;
    page.wait_for(
        "um's page with its buttons on",
        "document.getElementById('m-name').textContent === 'um' && \
         !document.getElementById('m-delete').disabled",
        TIMEOUT,
    )
    .await;

    // Roll back without the token: refused, and the page says what to do.
    page.eval("window.confirm = () => true").await;
    page.eval("document.getElementById('m-rollback').click()")
        .await;
    page.wait_for(
        "the refusal without a token",
        "document.getElementById('notice').textContent.includes('(401)') && \
         document.getElementById('notice').textContent.includes('Token')",
        TIMEOUT,
    )
    .await;
    assert_eq!(server.history_len("um"), 2);

    // With the token typed in: the rollback is recorded and converges to one replica of
    // the first image, shown live on the list.
    page.eval(&format!(
        "const t = document.getElementById('token'); t.value = '{TOKEN}'; \
         t.dispatchEvent(new Event('input'))"
    ))
    .await;
    page.eval("document.getElementById('m-rollback').click()")
        .await;
    page.wait_for(
        "the rollback recorded",
        "document.getElementById('notice').textContent.startsWith('Recorded deployment') && \
         document.querySelectorAll('#m-history tbody tr').length === 3",
        TIMEOUT,
    )
    .await;
    assert_eq!(server.history_len("um"), 3);
    page.eval("location.hash = '#/'").await;
    wait_row(&mut page, "um", "Available", "1/1").await;
    assert_eq!(
        page.eval(&cell("um", "image")).await,
        "mlmodel-test/static-http:1"
    );

    // Delete from the model page: the services go, and the list shows it.
    page.eval("location.hash = '#/um'").await;
    page.wait_for(
        "the model page again",
        "!document.getElementById('model-view').hidden",
        TIMEOUT,
    )
    .await;
    page.eval("document.getElementById('m-delete').click()")
        .await;
    page.eval("location.hash = '#/'").await;
    page.wait_for(
        "the deleted model shown as removed or gone",
        &format!(
            "{0} === null || {0} === 'Removed'",
            cell("um", "phase-cell")
        ),
        TIMEOUT,
    )
    .await;
    server.wait_for("um's service removed", TIMEOUT, || {
        common::server::inspect_service(&server.service_name("um")).is_none()
    });
    assert_eq!(page.eval("window.__sameDocument").await, 42);
    let problems = page.problems().await;
    assert!(problems.is_empty(), "the page had problems: {problems:?}");
}
