//! `DescribeEvents`: the Events table every describer ends with.

use super::format::*;
use jiff::Timestamp;
use serde_json::Value;

pub(super) fn describe_events(w: &mut Writer, events: &[Value], now: Timestamp) {
    if events.is_empty() {
        w.w(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| parse_time(s(e, "/lastTimestamp")));
    w.w(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.w(1, "----\t------\t----\t----\t-------\n");
    for e in sorted {
        let event_time = s(e, "/eventTime");
        let first = if event_time.is_empty() { since(s(e, "/firstTimestamp"), now) } else { since(event_time, now) };
        let count = e["count"].as_i64().unwrap_or(0);
        let interval = if let Some(series) = e.get("series").filter(|s| !s.is_null()) {
            format!(
                "{} (x{} over {first})",
                since(s(series, "/lastObservedTime"), now),
                series["count"].as_i64().unwrap_or(0)
            )
        } else if count > 1 {
            format!("{} (x{count} over {first})", since(s(e, "/lastTimestamp"), now))
        } else {
            first
        };
        let mut source = s(e, "/source/component").to_string();
        if source.is_empty() {
            source = s(e, "/reportingComponent").to_string();
        }
        let mut message = s(e, "/message").trim().to_string();
        let field_path = s(e, "/involvedObject/fieldPath");
        if !field_path.is_empty() {
            message = format!("{field_path}: {message}");
        }
        w!(w, 1, "{}\t{}\t{interval}\t{source}\t{message}\n", s(e, "/type"), s(e, "/reason"));
    }
}
