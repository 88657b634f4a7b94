//! Wall-clock timestamps, as every message, status and file of faultline writes them.

/// Now, as RFC 3339 with milliseconds in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `ms` since the epoch, as RFC 3339 with milliseconds in UTC (the epoch itself if out of range).
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
