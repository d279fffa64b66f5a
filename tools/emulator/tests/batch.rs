//! `$batch` contract (reference §3.9, §8.10).
mod common;

use common::*;
use reqwest::Method;

fn consent_json(value: i64, topic: bool) -> String {
    let mut v = purpose_consent("jane.doe@example.com", value);
    if topic {
        v["msdynmkt_contactpointconsenttype"] = 534120001.into();
        v["msdynmkt_topicId@odata.bind"] = format!("/msdynmkt_topics({NEWSLETTER})").into();
    }
    v.to_string()
}

fn part(cid: u32, method: &str, url: &str, body: &str) -> String {
    format!(
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {cid}\r\n\r\n{method} {url} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{body}\r\n"
    )
}

fn changeset(parts: &[String]) -> String {
    let mut s = "Content-Type: multipart/mixed; boundary=\"changeset_c0n53nt\"\r\n\r\n".to_string();
    for p in parts {
        s.push_str("--changeset_c0n53nt\r\n");
        s.push_str(p);
    }
    s.push_str("--changeset_c0n53nt--\r\n");
    s
}

fn batch(items: &[String]) -> String {
    let mut s = String::new();
    for i in items {
        s.push_str("--batch_d1d0m1\r\n");
        s.push_str(i);
    }
    s.push_str("\r\n--batch_d1d0m1--\r\n");
    s
}

async fn send(
    env: &Env,
    body: String,
    continue_on_error: bool,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut b = env
        .dv(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=\"batch_d1d0m1\"")
        .header("If-None-Match", "null");
    if continue_on_error {
        b = b.header("Prefer", "odata.continue-on-error");
    }
    let r = b.body(body).send().await.unwrap();
    let h = r.headers().clone();
    (r.status().as_u16(), r.text().await.unwrap(), h)
}

const REL: &str = "/api/data/v9.2/msdynmkt_contactpointconsent4s";

#[tokio::test]
async fn reference_batch_with_change_set_returns_two_204_parts() {
    let env = Env::start().await;
    let before = env.emu.consents().len();
    let body = batch(&[changeset(&[
        part(1, "POST", REL, &consent_json(534120001, false)),
        part(2, "POST", REL, &consent_json(534120001, true)),
    ])]);
    let (s, text, h) = send(&env, body, true).await;
    assert_eq!(s, 200);
    let ct = h["content-type"].to_str().unwrap();
    assert!(ct.starts_with("multipart/mixed; boundary=batchresponse_"));
    assert_eq!(h["preference-applied"], "odata.continue-on-error");
    assert!(text.contains("Content-Type: multipart/mixed; boundary=changesetresponse_"));
    assert_eq!(text.matches("HTTP/1.1 204 No Content\r\n").count(), 2);
    assert_eq!(text.matches("\r\nLocation: ").count(), 2);
    assert_eq!(text.matches("\r\nOData-EntityId: ").count(), 2);
    assert!(!text.replace("\r\n", "").contains('\n'), "CRLF throughout");
    assert_eq!(env.emu.consents().len(), before + 2);
    let log = env.emu.requests();
    assert_eq!(log.last().unwrap().batch_parts, Some(2));
}

#[tokio::test]
async fn bare_lf_batch_is_400_stream_not_readable() {
    let env = Env::start().await;
    let body =
        batch(&[part(1, "POST", REL, &consent_json(534120001, false))]).replace("\r\n", "\n");
    let (s, text, _) = send(&env, body, false).await;
    assert_eq!(s, 400);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error_code(&v), "0x80048d19");
    assert!(
        error_message(&v)
            .ends_with("InnerException : System.ArgumentException: Stream was not readable.")
    );
}

#[tokio::test]
async fn change_set_failure_rolls_back_every_write() {
    let env = Env::start().await;
    let before = env.emu.consents().len();
    let body = batch(&[changeset(&[
        part(1, "POST", REL, &consent_json(534120001, false)),
        part(2, "POST", REL, &consent_json(7, false)),
    ])]);
    let (s, text, _) = send(&env, body, true).await;
    assert_eq!(s, 200);
    assert!(text.contains("HTTP/1.1 400 Bad Request"));
    assert!(text.contains("0x8004431a"));
    assert!(!text.contains("204 No Content"));
    assert_eq!(env.emu.consents().len(), before);
}

#[tokio::test]
async fn stop_on_first_error_without_continue_preference() {
    let env = Env::start().await;
    let before = env.emu.consents().len();
    let body = batch(&[
        part(1, "POST", REL, &consent_json(534120001, false)),
        part(2, "POST", REL, &consent_json(9, false)),
        part(3, "POST", REL, &consent_json(534120002, false)),
    ]);
    let (s, text, h) = send(&env, body, false).await;
    assert_eq!(s, 400, "outer status is the failing part's");
    assert!(!h.contains_key("preference-applied"));
    assert_eq!(text.matches("HTTP/1.1 204").count(), 1);
    assert_eq!(text.matches("HTTP/1.1 400").count(), 1);
    assert_eq!(env.emu.consents().len(), before + 1);
}

#[tokio::test]
async fn continue_on_error_runs_every_part() {
    let env = Env::start().await;
    let before = env.emu.consents().len();
    let body = batch(&[
        part(1, "POST", REL, &consent_json(534120001, false)),
        part(2, "POST", REL, &consent_json(9, false)),
        part(3, "POST", REL, &consent_json(534120002, false)),
    ]);
    let (s, text, _) = send(&env, body, true).await;
    assert_eq!(s, 200);
    assert_eq!(text.matches("HTTP/1.1 204").count(), 2);
    assert_eq!(env.emu.consents().len(), before + 2);
}

#[tokio::test]
async fn content_id_reference_and_absolute_url_and_get_part() {
    let env = Env::start().await;
    let abs = format!("{}/api/data/v9.2/contacts", env.emu.base_url());
    let body = batch(&[
        changeset(&[
            part(1, "POST", &abs, r#"{"emailaddress1":"ref@example.com","lastname":"Ref"}"#),
            part(2, "PATCH", "$1", r#"{"firstname":"Via"}"#),
        ]),
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/contacts?$filter=emailaddress1%20eq%20'ref%40example.com' HTTP/1.1\r\nAccept: application/json\r\n\r\n".to_string(),
    ]);
    let (s, text, _) = send(&env, body, false).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("\"fullname\":\"Via Ref\""), "{text}");
}

#[tokio::test]
async fn more_than_1000_operations_is_400() {
    let env = Env::start().await;
    let parts: Vec<String> = (0..1001).map(|i| part(i, "POST", REL, "{}")).collect();
    let (s, _, _) = send(&env, batch(&parts), true).await;
    assert_eq!(s, 400);
}
