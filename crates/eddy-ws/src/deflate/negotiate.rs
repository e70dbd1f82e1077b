use super::{DeflateConfig, DeflateParams};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// One permessage-deflate offer's parameters, as the client sent them.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Pick the first acceptable permessage-deflate offer among a request's
/// `Sec-WebSocket-Extensions` values: the parameters both sides will use, and the value of
/// the response's `Sec-WebSocket-Extensions` header. `None` when `cfg` is disabled or no
/// offer is acceptable (the connection goes on uncompressed).
///
/// Offers of other extensions are passed over, and so are permessage-deflate offers with an
/// unknown, repeated or invalid parameter (RFC 7692 §5.1). The server always honours what the
/// offer asks: `server_no_context_takeover` and a `server_max_window_bits` smaller than its
/// own are echoed. It adds `server_no_context_takeover` and `client_no_context_takeover` when
/// `cfg` wants them, and limits `client_max_window_bits` when the client offered it.
///
/// ```
/// use eddy_ws::deflate::{negotiate, DeflateConfig};
///
/// let cfg = DeflateConfig { enabled: true, ..DeflateConfig::default() };
/// let offers = ["x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=\"10\""];
/// let (params, response) = negotiate(&offers, &cfg).unwrap();
/// assert_eq!(response, "permessage-deflate; client_max_window_bits=10");
/// assert_eq!((params.client_max_window_bits, params.server_max_window_bits), (10, 15));
/// ```
pub fn negotiate(offers: &[&str], cfg: &DeflateConfig) -> Option<(DeflateParams, String)> {
    if !cfg.enabled {
        return None;
    }
    offers
        .iter()
        .flat_map(|value| split_unquoted(value, b','))
        .find_map(|extension| parse_offer(extension).map(|offer| accept(&offer, cfg)))
}

/// The server's answer to an acceptable offer.
fn accept(offer: &Offer, cfg: &DeflateConfig) -> (DeflateParams, String) {
    let server_bits = cfg
        .server_max_window_bits
        .clamp(8, 15)
        .min(offer.server_max_window_bits.unwrap_or(15));
    let client_bits = match offer.client_max_window_bits {
        // Not offered: the client may not know the parameter, so it cannot be limited.
        None => 15,
        Some(value) => cfg
            .client_max_window_bits
            .clamp(8, 15)
            .min(value.unwrap_or(15)),
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || cfg.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || cfg.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        min_compress_size: cfg.min_compress_size,
        level: cfg.level,
    };
    let mut response = String::from(EXTENSION_NAME);
    if params.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    // Only when offered: a response must not carry it otherwise (§7.1.2.1).
    if offer.server_max_window_bits.is_some() {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    if let Some(value) = offer.client_max_window_bits {
        if value.is_some() || client_bits < 15 {
            response.push_str(&format!("; client_max_window_bits={client_bits}"));
        }
    }
    (params, response)
}

/// One extension of the header (`name; param; param=value`): its parameters if it is a valid
/// permessage-deflate offer.
fn parse_offer(extension: &str) -> Option<Offer> {
    let mut parts = split_unquoted(extension, b';');
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return None;
    }
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (part.trim(), None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => {
                offer.server_no_context_takeover = true;
                0
            }
            "client_no_context_takeover" if value.is_none() => {
                offer.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                offer.server_max_window_bits = Some(window_bits(value.as_deref()?)?);
                2
            }
            "client_max_window_bits" => {
                offer.client_max_window_bits = Some(match value.as_deref() {
                    Some(value) => Some(window_bits(value)?),
                    None => None,
                });
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(offer)
}

/// `8` to `15`, in decimal without leading zeros (§7.1.2.1's ABNF).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
        _ => None,
    }
}

/// A parameter value: a token, or a quoted string with its quotes and backslash escapes
/// removed. `None` when empty or badly quoted.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.is_empty() && !value.contains('"')).then(|| value.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None // no closing quote
}

/// Split at `sep` outside quoted strings.
fn split_unquoted(value: &str, sep: u8) -> impl Iterator<Item = &str> + '_ {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let text = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in text.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b if b == sep && !quoted => {
                    rest = Some(&text[i + 1..]);
                    return Some(&text[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> DeflateConfig {
        DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        }
    }

    fn answer(offers: &[&str], cfg: &DeflateConfig) -> Option<String> {
        negotiate(offers, cfg).map(|(_, response)| response)
    }

    #[test]
    fn plain_offer_and_disabled() {
        let (params, response) = negotiate(&["permessage-deflate"], &on()).unwrap();
        assert_eq!(response, "permessage-deflate");
        assert_eq!(
            params,
            DeflateParams {
                min_compress_size: on().min_compress_size,
                level: on().level,
                ..DeflateParams::default()
            }
        );
        assert_eq!(
            answer(&["permessage-deflate"], &DeflateConfig::default()),
            None
        );
        assert_eq!(answer(&[], &on()), None);
        assert_eq!(answer(&["x-webkit-deflate-frame"], &on()), None);
    }

    #[test]
    fn parameters_with_and_without_values() {
        let (p, r) = negotiate(
            &[
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
               server_max_window_bits=10; client_max_window_bits",
            ],
            &on(),
        )
        .unwrap();
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10"
        );
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 15)
        );
        // The server's own limits.
        let cfg = DeflateConfig {
            server_max_window_bits: 12,
            client_max_window_bits: 11,
            server_no_context_takeover: true,
            ..on()
        };
        let (p, r) = negotiate(&["permessage-deflate; client_max_window_bits"], &cfg).unwrap();
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=11"
        );
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 11)
        );
        // The client asks for less than the server's limit: the smaller one wins.
        let (p, r) = negotiate(
            &["permessage-deflate; server_max_window_bits=8; client_max_window_bits=9"],
            &cfg,
        )
        .unwrap();
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; \
             client_max_window_bits=9"
        );
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (8, 9));
        // Not offered: the client's window cannot be limited, nor announced.
        let (p, r) = negotiate(&["permessage-deflate"], &cfg).unwrap();
        assert_eq!(r, "permessage-deflate; server_no_context_takeover");
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 15)
        );
    }

    #[test]
    fn invalid_offers_are_skipped() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=0x0f",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=\"10",
            "permessage-deflate; client_max_window_bits=\"1\"0",
            "permessage-deflate;",
        ] {
            assert_eq!(answer(&[bad], &on()), None, "{bad}");
            if bad.matches('"').count() % 2 == 1 {
                continue; // an open quote runs to the end of the header
            }
            let with_fallback = format!("{bad}, permessage-deflate; client_no_context_takeover");
            assert_eq!(
                answer(&[&with_fallback], &on()).as_deref(),
                Some("permessage-deflate; client_no_context_takeover"),
                "{bad}"
            );
        }
    }

    #[test]
    fn several_offers_and_quoted_values() {
        let offers = [
            "foo; a=\"b,c;d\", permessage-deflate; server_max_window_bits=16",
            "PerMessage-Deflate ; Server_Max_Window_Bits = \"1\\1\" ",
            "permessage-deflate",
        ];
        assert_eq!(
            answer(&offers, &on()).as_deref(),
            Some("permessage-deflate; server_max_window_bits=11")
        );
        assert_eq!(unquote("\"a\\\"b\""), Some("a\"b".to_owned()));
        assert_eq!(unquote("\"\""), Some(String::new()));
        assert_eq!(unquote(""), None);
        let parts: Vec<_> = split_unquoted("a,\"b,\\\",c\",d", b',').collect();
        assert_eq!(parts, ["a", "\"b,\\\",c\"", "d"]);
    }
}
