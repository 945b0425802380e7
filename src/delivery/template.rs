//! Message templates: `{{placeholder}}` replaced by a value of the event's context; in HTML the
//! values are escaped, so a customer named `<script>` stays text. Pure: no Postgres.

use std::collections::BTreeMap;

/// Every placeholder a template may use (the keys of `booking_admin.delivery_context`).
pub const PLACEHOLDERS: &[&str] = &[
    "event_type",
    "tenant_name",
    "customer_name",
    "customer_email",
    "service_name",
    "staff_name",
    "starts_at_local",
    "ends_at_local",
    "date_local",
    "time_local",
    "time_zone",
    "appointment_id",
    "reason",
    "customer_phone",
    "recipient_email",
    "recipient_phone",
    "confirm_url",
    "cancel_url",
    "reminder_offset",
    "agenda",
    "appointment_count",
];

/// The placeholders of a template, in order; an error for an unknown or unclosed one.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| "a placeholder opened with {{ is not closed with }}".to_string())?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!("unknown placeholder {{{{{name}}}}}; known: {}", PLACEHOLDERS.join(", ")));
        }
        found.push(name);
        rest = &after[close + 2..];
    }
    Ok(found)
}

/// Renders a template (already checked by `placeholders`; an unknown name renders empty).
pub fn render(template: &str, context: &BTreeMap<String, String>, html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let value = context.get(after[..close].trim()).map(String::as_str).unwrap_or("");
        if html {
            escape_html(value, &mut out);
        } else {
            out.push_str(value);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_html(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BTreeMap<String, String> {
        [("customer_name", "Ann <b>"), ("time_local", "10:00")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_text_as_is_and_escapes_html() {
        let t = "Hi {{ customer_name }}, at {{time_local}}.";
        assert_eq!(render(t, &ctx(), false), "Hi Ann <b>, at 10:00.");
        assert_eq!(render(t, &ctx(), true), "Hi Ann &lt;b&gt;, at 10:00.");
        assert_eq!(render("{{reason}}!", &ctx(), false), "!");
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused() {
        assert_eq!(placeholders("{{customer_name}} {{ date_local }}"), Ok(vec!["customer_name", "date_local"]));
        assert!(placeholders("{{password}}").unwrap_err().contains("unknown placeholder {{password}}"));
        assert!(placeholders("Hi {{customer_name").is_err());
    }
}
