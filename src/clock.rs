//! Wall-clock timestamps, as every message, status and file of faultline writes them.

/// Now, as RFC 3339 with milliseconds in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
