//! Bodies stream through the proxy: 100 MiB each way with bounded memory.
//!
//! Its own test binary so the peak-memory reading covers only this transfer: the process's
//! high-water mark is reset (`/proc/self/clear_refs`), 100 MiB go up and 100 MiB come down
//! through cloakroom, and the peak may grow by far less than one body. A proxy that buffered
//! whole bodies would exceed it.

use cloakroom::upstream::HttpClient;
use cloakroom_test_support as support;
use http_body_util::BodyExt;
use std::time::Duration;
use support::*;

const SIZE: u64 = 100 * 1024 * 1024;
const ALLOWED_GROWTH_KIB: u64 = 48 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_with_bounded_memory() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let client = HttpClient::new(Duration::from_secs(5));

    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS needs Linux");
    let baseline = status_kib("VmRSS:");

    let upload = http::Request::post(bff.url("/api/upload"))
        .header("cookie", &cookie)
        .header("x-csrf", "1")
        .body(GeneratedBody::new(SIZE).boxed())
        .unwrap();
    let response = client.send(upload, Duration::from_secs(60)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let counted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(counted["bytes"], SIZE, "the upstream did not receive the whole upload");

    let download = http::Request::get(bff.url(&format!("/api/download?bytes={SIZE}")))
        .header("cookie", &cookie)
        .header("x-csrf", "1")
        .body(cloakroom::respond::empty())
        .unwrap();
    let response = client.send(download, Duration::from_secs(60)).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, SIZE, "the browser did not receive the whole download");

    let growth = status_kib("VmHWM:").saturating_sub(baseline);
    println!("peak memory growth while streaming 2 x 100 MiB: {} KiB", growth);
    assert!(growth < ALLOWED_GROWTH_KIB, "peak RSS grew by {growth} KiB: bodies are being buffered");
}
