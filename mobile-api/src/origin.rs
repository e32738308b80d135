//! Which browser origins may open a websocket. A page on another site must not reach a
//! websocket with the user's credentials (cross-site websocket hijacking), so an upgrade is
//! taken when it has no `Origin` (not a browser: a device app, a script), comes from the
//! server's own address (the `Origin`'s host and port equal the `Host` header), or names an
//! origin of the allow-list exactly (`scheme://host[:port]`). `Origin: null` (a sandboxed
//! frame, a file) and every other site are refused.
//!
//! The gateway also takes the pages of the operator server that runs beside it
//! ([`sibling`]): the responder app is served on the server's web port and opens the
//! gateway on the same host name at the gateway's port, a different origin by port alone.

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

/// Whether `origin` is the operator server beside this gateway: the same host name as the
/// `Host` the upgrade was sent to, on `web_port` (explicit, or the scheme's default).
pub fn sibling(origin: Option<&str>, host: Option<&str>, web_port: u16) -> bool {
    let (Some(origin), Some(host)) = (origin, host) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    let (rest, default_port) = if let Some(r) = origin.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = origin.strip_prefix("http://") {
        (r, 80)
    } else {
        return false;
    };
    let Some((origin_name, origin_port)) = split_host_port(rest, default_port) else {
        return false;
    };
    let Some((host_name, _)) = split_host_port(host, 0) else {
        return false;
    };
    origin_port == web_port && origin_name.eq_ignore_ascii_case(host_name)
}

/// `name[:port]` or `[v6][:port]` into the name and the port (`default` when none); `None`
/// for anything else (a path, user info, a bad port).
fn split_host_port(text: &str, default: u16) -> Option<(&str, u16)> {
    if text.is_empty() || text.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_servers_pages_are_siblings() {
        let host = Some("muster.example:7450");
        let cases = [
            (
                Some("https://muster.example:8080"),
                true,
                "the server's web port",
            ),
            (
                Some("http://MUSTER.example:8080/"),
                true,
                "case and a slash",
            ),
            (Some("https://muster.example:9090"), false, "another port"),
            (
                Some("https://muster.example"),
                false,
                "the default port, not 8080",
            ),
            (Some("https://evil.example:8080"), false, "another host"),
            (
                Some("https://muster.example.evil:8080"),
                false,
                "a longer host",
            ),
            (Some("https://a@muster.example:8080"), false, "user info"),
            (Some("null"), false, "a sandboxed frame"),
            (None, false, "no origin: left to `allowed`"),
        ];
        for (origin, expected, why) in cases {
            assert_eq!(sibling(origin, host, 8080), expected, "{why}: {origin:?}");
        }
        assert!(sibling(Some("http://[::1]:8080"), Some("[::1]:7450"), 8080));
        assert!(!sibling(
            Some("http://[::1]:8080"),
            Some("[::2]:7450"),
            8080
        ));
        assert!(sibling(
            Some("https://m.example"),
            Some("m.example:7450"),
            443
        ));
        assert!(!sibling(Some("https://m.example:8080"), None, 8080));
    }

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
