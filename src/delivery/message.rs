//! What is sent for one delivery, by channel: the Standard Webhooks body, a Slack message, an
//! email or an SMS text rendered from the tenant's template. Pure: no Postgres.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::template::render;

/// A template as stored in booking_admin.message_templates.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Template {
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
}

/// The Standard Webhooks payload shape: `type`, `timestamp` (the event's), `data` (the event's
/// payload with its tenant and event ids).
pub fn webhook_body(
    event_type: &str,
    created_at: &str,
    tenant_id: Option<&str>,
    event_id: Option<&str>,
    payload: &Value,
) -> Vec<u8> {
    let mut data = payload.clone();
    if let Value::Object(m) = &mut data {
        if let Some(t) = tenant_id {
            m.entry("tenant_id").or_insert_with(|| json!(t));
        }
        if let Some(e) = event_id {
            m.entry("event_id").or_insert_with(|| json!(e));
        }
    }
    serde_json::to_vec(&json!({ "type": event_type, "timestamp": created_at, "data": data })).unwrap_or_default()
}

/// The placeholders' values from booking_admin.delivery_context's document.
pub fn context(doc: &Value) -> BTreeMap<String, String> {
    doc.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
        .unwrap_or_default()
}

/// A Slack incoming-webhook body: the template's subject in bold and its text; without a
/// template for the event type, the type and the payload.
pub fn slack_body(
    template: Option<&Template>,
    ctx: &BTreeMap<String, String>,
    event_type: &str,
    payload: &Value,
) -> Vec<u8> {
    let text = match template {
        Some(t) => format!("*{}*\n{}", render(&t.subject, ctx, false), render(&t.body_text, ctx, false)),
        None => format!("*{event_type}*\n```{payload}```"),
    };
    serde_json::to_vec(&json!({ "text": text })).unwrap_or_default()
}

/// Subject, plain text and HTML of an email.
pub fn email_parts(t: &Template, ctx: &BTreeMap<String, String>) -> (String, String, Option<String>) {
    (
        render(&t.subject, ctx, false).replace(['\r', '\n'], " "),
        render(&t.body_text, ctx, false),
        t.body_html.as_ref().map(|h| render(h, ctx, true)),
    )
}

/// The text of an SMS: the template's plain-text body.
pub fn sms_text(t: &Template, ctx: &BTreeMap<String, String>) -> String {
    render(&t.body_text, ctx, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_body_has_type_timestamp_and_data_with_ids() {
        let body = webhook_body("booking.created", "2026-03-01T10:00:00Z", Some("t1"), Some("e1"), &json!({"a": 1}));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"type": "booking.created", "timestamp": "2026-03-01T10:00:00Z",
                              "data": {"a": 1, "tenant_id": "t1", "event_id": "e1"}})
        );
    }

    #[test]
    fn emails_and_slack_render_the_template_and_subjects_stay_one_line() {
        let ctx = context(&json!({"customer_name": "Ann", "time_local": "10:00"}));
        let t = Template {
            subject: "Hi\n{{customer_name}}".into(),
            body_text: "at {{time_local}}".into(),
            body_html: Some("<b>{{customer_name}}</b>".into()),
        };
        assert_eq!(email_parts(&t, &ctx), ("Hi Ann".into(), "at 10:00".into(), Some("<b>Ann</b>".into())));
        assert_eq!(sms_text(&t, &ctx), "at 10:00");
        let slack: Value = serde_json::from_slice(&slack_body(Some(&t), &ctx, "x.y", &json!({}))).unwrap();
        assert_eq!(slack["text"], "*Hi\nAnn*\nat 10:00");
        let bare: Value =
            serde_json::from_slice(&slack_body(None, &ctx, "conflict.detected", &json!({"k": 1}))).unwrap();
        assert!(bare["text"].as_str().unwrap().starts_with("*conflict.detected*"));
    }
}
