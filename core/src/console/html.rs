//! HTML for the console: escaping (every value from the store or a request
//! goes through [`escape`]) and the page frame: light and dark by the
//! system's preference, labelled controls, a skip link.

/// `text` safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --line: #d0d7de; --accent: #0550ae; --bad: #a40e26; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9da7b3; --line: #30363d; --accent: #6cb6ff; --bad: #ff7b72; } }
body { font: 15px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
header, main { max-width: 72rem; margin: 0 auto; padding: 0 1rem; }
header { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; border-bottom: 1px solid var(--line); }
nav a { margin-right: 1rem; color: var(--accent); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
.muted { color: var(--muted); }
.bad { color: var(--bad); }
button { font: inherit; padding: .25rem .75rem; }
input, select { font: inherit; padding: .25rem; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; }
";

/// A whole page: `title`, the navigation when signed in as `who`, `body`.
pub fn page(title: &str, who: Option<(&str, bool)>, body: &str) -> String {
    let header = match who {
        Some((name, admin)) => format!(
            "<nav aria-label=\"Console\"><a href=\"/console/connections\">Connections</a><a href=\"/console/runs\">Runs</a><a href=\"/console/users\">Users</a><a href=\"/console/groups\">Groups</a><a href=\"/console/acl-groups\">ACL groups</a><a href=\"/console/devices\">Devices</a><a href=\"/console/events\">Events</a><a href=\"/console/tokens\">Tokens</a></nav><span class=\"muted\">signed in as {}{}</span>",
            escape(name),
            if admin { "" } else { " (read only)" }
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} - idpsync</title><style>{STYLE}</style></head><body><a class=\"skip\" href=\"#main\">Skip to content</a><header><h1>idpsync</h1>{header}</header><main id=\"main\"><h2>{}</h2>{body}</main></body></html>",
        escape(title),
        escape(title)
    )
}

/// A one-button form posting to `action` with the session's CSRF token.
pub fn button(action: &str, csrf: &str, label: &str, confirm: Option<&str>) -> String {
    let confirm = confirm
        .map(|question| format!(" data-confirm=\"{}\"", escape(question)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"{}\"{confirm}><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">{}</button></form>",
        escape(action),
        escape(csrf),
        escape(label)
    )
}

/// Asks before submitting any form with `data-confirm`.
pub const CONFIRM_SCRIPT: &str = "<script>document.addEventListener('submit', e => { const q = e.target.dataset.confirm; if (q && !confirm(q)) e.preventDefault(); });</script>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let form = button("/console/x", "t\"ok", "Go <now>", Some("Sure?"));
        assert!(form.contains("value=\"t&quot;ok\""), "{form}");
        assert!(form.contains("Go &lt;now&gt;"), "{form}");
    }
}
