//! Which browser origins may open a websocket. A page on another site must not reach a
//! websocket with the user's credentials (cross-site websocket hijacking), so an upgrade is
//! taken when it has no `Origin` (not a browser: a device app, a script), comes from the
//! server's own address (the `Origin`'s host and port equal the `Host` header), or names an
//! origin of the allow-list exactly (`scheme://host[:port]`). `Origin: null` (a sandboxed
//! frame, a file) and every other site are refused.

/// Whether an upgrade with this `Origin` and `Host` may go on.
pub fn allowed(origin: Option<&str>, host: Option<&str>, allow_list: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allow_list.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_against_the_host_and_the_list() {
        let list = vec!["https://wall.example".to_owned()];
        let host = Some("127.0.0.1:8080");
        let cases = [
            (None, true),
            (Some("http://127.0.0.1:8080"), true),
            (Some("https://wall.example"), true),
            (Some("https://wall.example/"), true),
            (Some("https://evil.example"), false),
            (Some("http://127.0.0.1:9090"), false),
            (Some("http://127.0.0.1:8080.evil.example"), false),
            (Some("null"), false),
        ];
        for (origin, expected) in cases {
            assert_eq!(allowed(origin, host, &list), expected, "{origin:?}");
        }
        assert!(!allowed(Some("http://127.0.0.1:8080"), None, &[]));
    }
}
